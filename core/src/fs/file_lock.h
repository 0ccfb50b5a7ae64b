// FileLock: an flock(2) held on a lock file for as long as the object lives.
#pragma once

#include <filesystem>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm {

class FileLock {
 public:
  enum class Mode { shared, exclusive };

  FileLock() = default;
  FileLock(FileLock&&) noexcept = default;
  FileLock& operator=(FileLock&&) noexcept = default;

  // Opens (creating it, mode 0600) `path` and blocks until the lock is granted. The lock
  // file itself is never deleted, so every holder locks the same inode. Locks are per open
  // file description: two FileLocks on one path exclude each other within one process too.
  static Result<FileLock> acquire(const std::filesystem::path& path, Mode mode);

  bool held() const { return fd_.valid(); }
  // Releases the lock early; idempotent.
  void release() { fd_.reset(); }

 private:
  explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;  // closing it drops the lock
};

}  // namespace fcvm
