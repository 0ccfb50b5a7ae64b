// The guest's mount table: the API filesystems PID 1 mounts first, the container root the
// plan asks for, and the read-only remount before power-off.
#pragma once

#include "device_finder.h"
#include "fcvm/agent_plan.h"
#include "owned_fd.h"

namespace fcvm::agent {

class GuestRoot {
 public:
  // Mounts /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /run and /tmp in the initramfs
  // and adds the /dev/fd, /dev/std* links. Throws SetupError.
  static void mount_api_filesystems();

  // Mounts the root described by `spec` and makes it the process root: the initramfs cannot
  // be pivot_root'ed away, so the new root is moved over "/" (MS_MOVE) and chroot'ed into,
  // after /dev, /proc, /sys, /run and /tmp were moved into it. kInitramfs does nothing.
  // Throws SetupError naming the drive or mount point.
  void enter(const RootSpec& spec, const DeviceFinder& devices);

  // Flushes and remounts the root (and the overlay's upper filesystem) read-only so the
  // disks are clean at power-off. Best effort: failures are logged, never thrown.
  void prepare_power_off() noexcept;

 private:
  RootMode mode_ = RootMode::kInitramfs;
  // The overlay's upper filesystem, which is not reachable by path after the switch.
  OwnedFd upper_mount_;
};

}  // namespace fcvm::agent
