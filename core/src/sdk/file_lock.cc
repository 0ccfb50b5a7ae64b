#include "fcvm/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fcvm {

FileLock::FileLock(FileLock&& other) noexcept
    : path_(std::move(other.path_)), lifetime_(other.lifetime_), fd_(std::move(other.fd_)) {}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    lifetime_ = other.lifetime_;
    fd_ = std::move(other.fd_);
  }
  return *this;
}

FileLock::~FileLock() { release(); }

void FileLock::release() {
  if (!fd_) return;
  // Unlink while still holding the lock, so no one can lock this name's old inode after.
  if (lifetime_ == Lifetime::removed_on_release) ::unlink(path_.c_str());
  fd_.reset();
}

Result<FileLock> FileLock::lock(const std::filesystem::path& path, Mode mode, Lifetime lifetime,
                                bool wait) {
  const int op = (mode == Mode::shared ? LOCK_SH : LOCK_EX) | (wait ? 0 : LOCK_NB);
  for (;;) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) {
      if (errno == ENOENT) return error(Errc::not_found, "lock file " + path.string() +
                                                             ": its directory does not exist");
      return errno_status("open lock file " + path.string());
    }
    while (::flock(fd.get(), op) != 0) {
      if (errno == EWOULDBLOCK && !wait) {
        return error(Errc::already_exists, path.string() + " is locked by another holder");
      }
      if (errno != EINTR) return errno_status("lock " + path.string());
    }
    if (lifetime == Lifetime::removed_on_release) {
      // The previous holder may have unlinked the file between our open and our lock.
      struct stat held {}, named {};
      if (::fstat(fd.get(), &held) != 0 || ::stat(path.c_str(), &named) != 0 ||
          held.st_ino != named.st_ino || held.st_dev != named.st_dev) {
        continue;
      }
    }
    FileLock out;
    out.path_ = path;
    out.lifetime_ = lifetime;
    out.fd_ = std::move(fd);
    return out;
  }
}

Result<FileLock> FileLock::acquire(const std::filesystem::path& path, Mode mode, Lifetime lifetime) {
  return lock(path, mode, lifetime, /*wait=*/true);
}

Result<FileLock> FileLock::try_acquire(const std::filesystem::path& path, Mode mode,
                                       Lifetime lifetime) {
  return lock(path, mode, lifetime, /*wait=*/false);
}

}  // namespace fcvm
