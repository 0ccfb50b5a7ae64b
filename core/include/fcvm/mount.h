// Mount: sole owner of one mount point's mount; unmounts it on destruction.
#pragma once

#include <filesystem>
#include <string>

#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

class FCVM_SDK_API Mount {
 public:
  Mount() = default;
  Mount(Mount&& other) noexcept;
  Mount& operator=(Mount&& other) noexcept;
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;
  // Unmounts (see unmount()); errors are swallowed: call unmount() to see them.
  ~Mount();

  // mount(2) `source` (a device, or a path for bind mounts) on the existing directory
  // `target`. Needs CAP_SYS_ADMIN. On failure nothing is mounted. Thread-safe.
  static Result<Mount> create(const std::filesystem::path& source,
                              const std::filesystem::path& target, const std::string& fstype,
                              unsigned long flags = 0, const std::string& data = {});

  // Takes ownership of whatever is mounted at `target` now (nothing is checked).
  static Mount adopt(std::filesystem::path target);

  // Unmounts; when the mount is busy, detaches it lazily (MNT_DETACH: gone from the tree
  // now, freed when its last user leaves). Idempotent: a no-op once unmounted or released.
  // On error the mount stays owned, so the destructor tries again.
  Status unmount();

  // Gives up ownership, leaving the filesystem mounted; returns the mount point.
  std::filesystem::path release() noexcept;

  const std::filesystem::path& target() const noexcept { return target_; }
  bool mounted() const noexcept { return !target_.empty(); }

 private:
  explicit Mount(std::filesystem::path target) : target_(std::move(target)) {}
  std::filesystem::path target_;  // empty: owns nothing
};

// Whether `path` is the root of a mount (statx STATX_ATTR_MOUNT_ROOT). not_found when the
// path does not exist.
FCVM_SDK_API Result<bool> is_mount_point(const std::filesystem::path& path);

}  // namespace fcvm
