#include "dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <system_error>

namespace fcvm::btrfs {

Result<DirLock> DirLock::acquire(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) ::chmod(dir.c_str(), 0700);
  if (ec) return error(Errc::io, "storage-btrfs: create " + dir.string() + ": " + ec.message());
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno_status("storage-btrfs: open " + dir.string());
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return errno_status("storage-btrfs: lock " + dir.string());
  }
  return DirLock(std::move(fd));
}

}  // namespace fcvm::btrfs
