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

  // --read-only: mounts a tmpfs on /var/tmp (as podman's read-only tmpfs; /tmp, /run and
  // /dev are already writable mounts of their own) and makes the root mount read-only.
  // Nothing for kInitramfs. Throws SetupError.
  void make_read_only();
  bool read_only() const { return read_only_; }
  // Makes the root mount writable (true) or read-only again (false) around the agent's own
  // writes into a read-only root (/etc/hostname for a new hostname). Throws SetupError.
  void set_writable(bool writable);

 private:
  RootMode mode_ = RootMode::kInitramfs;
  bool read_only_ = false;
  // The overlay's upper filesystem, which is not reachable by path after the switch.
  OwnedFd upper_mount_;
};

}  // namespace fcvm::agent
