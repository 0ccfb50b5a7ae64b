// DirLock: an exclusive flock on a directory itself, held while the object lives. No lock
// file to leave behind; the lock goes with the process, however it dies.
#pragma once

#include <filesystem>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm::btrfs {

class DirLock {
 public:
  // Creates `dir` (0700) if missing, then blocks until the lock is granted.
  static Result<DirLock> acquire(const std::filesystem::path& dir);

 private:
  explicit DirLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace fcvm::btrfs
