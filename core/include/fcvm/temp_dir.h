// TempDir: a private scratch directory, removed with everything in it when the object dies.
//
// Each live TempDir holds an flock on its own directory, so a sweeper can tell one in use
// from one a crashed process left behind (remove_stale). Callers that create and sweep in
// the same parent must serialize the two (the image store does it under its store lock),
// or a sweeper could catch a directory between its creation and its lock.
//
// Threading: one thread at a time per object. Nothing here throws.
#pragma once

#include <filesystem>
#include <string_view>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "fcvm/visibility.h"

namespace fcvm {

class FCVM_SDK_API TempDir {
 public:
  TempDir() = default;
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;  // removes the directory it held before
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  // Creates `<parent>/<prefix>XXXXXX` (mode 0700). `parent` must exist. On failure nothing
  // is left behind.
  static Result<TempDir> create(const std::filesystem::path& parent, std::string_view prefix);
  // The same under the system's temp directory ($TMPDIR, else /tmp).
  static Result<TempDir> create(std::string_view prefix);

  // Deletes every `<parent>/<prefix>*` directory whose owner no longer holds its lock.
  // Best effort: errors are ignored (the next sweep retries).
  static void remove_stale(const std::filesystem::path& parent, std::string_view prefix);

  // Empty once removed (or for a default-constructed object).
  const std::filesystem::path& path() const { return path_; }
  // Removes the directory and its contents now; idempotent; errors are ignored.
  void remove();

 private:
  std::filesystem::path path_;
  UniqueFd lock_;  // the directory itself, flocked
};

}  // namespace fcvm
