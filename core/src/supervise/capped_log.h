// Size caps on a VM's logs (Config::log_max_bytes), so that a chatty or hostile guest
// cannot fill the host's disk.
//
// CappedLog: the container's output log, written by this process. Once appending would
// take the file past the cap, the file is renamed to "<path>.1" (replacing an older one)
// and a new one starts: at most twice the cap on disk, and the newest output is whole.
//
// cap_appended_file(): the console log, written by the VMM with O_APPEND: past the cap it
// keeps its newest half behind a line that says so (the VMM's next write lands at the new
// end). A line the VMM writes while this runs may be lost.
//
// Threading: one thread. Files are created 0600. Nothing throws.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm {

class CappedLog {
 public:
  // Opens (creating, appending to) `path`. max_bytes 0: no cap.
  static Result<CappedLog> open(const std::filesystem::path& path, std::uint64_t max_bytes);

  // Appends `bytes`, rotating first when they would take the file past the cap. A write
  // error is returned (the caller logs it; the output itself still flows).
  Status append(std::string_view bytes);

 private:
  CappedLog(std::filesystem::path path, std::uint64_t max_bytes, UniqueFd fd, std::uint64_t size)
      : path_(std::move(path)), max_bytes_(max_bytes), fd_(std::move(fd)), size_(size) {}
  Status rotate();

  std::filesystem::path path_;
  std::uint64_t max_bytes_;
  UniqueFd fd_;
  std::uint64_t size_;
};

// Keeps `path` (appended to by another process) under `max_bytes` as described above.
// A missing file or max_bytes 0 is nothing to do.
Status cap_appended_file(const std::filesystem::path& path, std::uint64_t max_bytes);

}  // namespace fcvm
