// FileLock: an flock(2) held on a lock file for as long as the object lives.
//
// Threading: one thread at a time per object. Locks are per open file description: two
// FileLocks on one path exclude each other within one process too. Nothing here throws.
#pragma once

#include <filesystem>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "fcvm/visibility.h"

namespace fcvm {

class FCVM_SDK_API FileLock {
 public:
  enum class Mode { shared, exclusive };
  // kept: the lock file stays forever, so every holder locks the same inode.
  // removed_on_release: the holder unlinks it when it lets go (leaving no trace once nobody
  // builds, say); a waiter that wins a lock on an unlinked file retries on the new one.
  enum class Lifetime { kept, removed_on_release };

  FileLock() = default;
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;  // releases the lock it held before
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

  // Opens (creating it, mode 0600) `path` and blocks until the lock is granted; no time
  // bound. Errors: not_found when the parent directory does not exist, io otherwise.
  static Result<FileLock> acquire(const std::filesystem::path& path, Mode mode,
                                  Lifetime lifetime = Lifetime::kept);
  // Like acquire, but fails with already_exists at once instead of waiting.
  static Result<FileLock> try_acquire(const std::filesystem::path& path, Mode mode,
                                      Lifetime lifetime = Lifetime::kept);

  bool held() const { return fd_.valid(); }
  // Releases the lock early (unlinking the file first for removed_on_release); idempotent.
  void release();

 private:
  static Result<FileLock> lock(const std::filesystem::path& path, Mode mode, Lifetime lifetime,
                               bool wait);

  std::filesystem::path path_;
  Lifetime lifetime_ = Lifetime::kept;
  UniqueFd fd_;  // closing it drops the lock
};

}  // namespace fcvm
