#include "fcvm/mount.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <utility>

namespace fcvm {

Mount::Mount(Mount&& other) noexcept : target_(std::exchange(other.target_, {})) {}

Mount& Mount::operator=(Mount&& other) noexcept {
  if (this != &other) {
    (void)unmount();
    target_ = std::exchange(other.target_, {});
  }
  return *this;
}

Mount::~Mount() { (void)unmount(); }

Result<Mount> Mount::create(const std::filesystem::path& source, const std::filesystem::path& target,
                            const std::string& fstype, unsigned long flags,
                            const std::string& data) {
  if (::mount(source.c_str(), target.c_str(), fstype.empty() ? nullptr : fstype.c_str(), flags,
              data.empty() ? nullptr : data.c_str()) != 0) {
    const int err = errno;
    std::string what = "mount " + source.string() + " on " + target.string();
    if (!fstype.empty()) what += " (" + fstype + ")";
    if (err == EPERM) return error(Errc::unavailable, what + ": permission denied; run as root");
    return errno_status(what, err);
  }
  return Mount(target);
}

Mount Mount::adopt(std::filesystem::path target) { return Mount(std::move(target)); }

Status Mount::unmount() {
  if (target_.empty()) return ok_status();
  if (::umount2(target_.c_str(), UMOUNT_NOFOLLOW) != 0) {
    // EINVAL: not a mount point (any more), so nothing is ours to undo.
    if (errno == EBUSY) {
      if (::umount2(target_.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL)
        return errno_status("lazy unmount " + target_.string());
    } else if (errno != EINVAL && errno != ENOENT) {
      return errno_status("unmount " + target_.string());
    }
  }
  target_.clear();
  return ok_status();
}

std::filesystem::path Mount::release() noexcept { return std::exchange(target_, {}); }

Result<bool> is_mount_point(const std::filesystem::path& path) {
  struct statx stx {};
  if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) != 0) {
    if (errno == ENOENT) return error(Errc::not_found, path.string() + ": no such file or directory");
    return errno_status("statx " + path.string());
  }
  if ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) == 0) {
    return error(Errc::unavailable, "statx cannot tell mount points on this kernel (needs 5.8)");
  }
  return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
}

}  // namespace fcvm
