#include "fs/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>

namespace fcvm {

Result<FileLock> FileLock::acquire(const std::filesystem::path& path, Mode mode) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return errno_status("open lock file " + path.string());
  const int op = mode == Mode::shared ? LOCK_SH : LOCK_EX;
  while (::flock(fd.get(), op) != 0) {
    if (errno != EINTR) return errno_status("lock " + path.string());
  }
  return FileLock(std::move(fd));
}

}  // namespace fcvm
