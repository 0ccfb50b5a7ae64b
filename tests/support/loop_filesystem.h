// LoopFilesystem: a real filesystem for tests, made in a sparse file inside a unique temp
// dir and loop-mounted there. Unmounted, detached and deleted on destruction, so parallel
// suites never collide and nothing is left behind.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "fcvm/loop_device.h"
#include "fcvm/mount.h"
#include "fcvm/result.h"
#include "fcvm/temp_dir.h"

namespace fcvm::testing {

class LoopFilesystem {
 public:
  // Why a loop filesystem of `fstype` cannot be made here (not root, no loop devices, no
  // mkfs.<fstype>), or "" when it can. Tests GTEST_SKIP() with this reason.
  static std::string missing_prerequisite(const std::string& fstype);

  // mkfs.<fstype> on a sparse file of `size_mib`, mounted at mount_point().
  static Result<LoopFilesystem> create(const std::string& fstype, std::uint64_t size_mib);

  const std::filesystem::path& mount_point() const { return mount_.target(); }
  const std::filesystem::path& image() const { return image_; }
  const std::filesystem::path& device() const { return loop_.device(); }

 private:
  // Destroyed in reverse: unmount, detach, delete the dir.
  TempDir dir_;
  std::filesystem::path image_;
  LoopDevice loop_;
  Mount mount_;
};

}  // namespace fcvm::testing
