// LoopDevice: a file attached to a /dev/loopN block device, detached on destruction.
#pragma once

#include <filesystem>
#include <vector>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "fcvm/visibility.h"

namespace fcvm {

class FCVM_SDK_API LoopDevice {
 public:
  LoopDevice() = default;
  LoopDevice(LoopDevice&&) noexcept = default;
  LoopDevice& operator=(LoopDevice&& other) noexcept;
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;
  // Detaches (see detach()); errors are swallowed.
  ~LoopDevice();

  // Attaches the regular file `file` to a free loop device (/dev/loop-control, then
  // LOOP_CONFIGURE, or LOOP_SET_FD + LOOP_SET_STATUS64 on kernels before 5.8). The device
  // is set to autoclear: the kernel detaches it when its last user closes it, so a
  // process killed with the device still open leaks nothing. Retries when another process
  // takes the same free device first. Needs CAP_SYS_ADMIN. On failure nothing is attached.
  static Result<LoopDevice> attach(const std::filesystem::path& file, bool read_only = false);

  // Detaches the file (LOOP_CLR_FD) and closes the device. If the device is still in use
  // (mounted), the kernel detaches it when that user goes (autoclear). Idempotent.
  Status detach();

  // Closes the device without clearing it: a mount made from it keeps it attached, and
  // the kernel detaches it at unmount (autoclear). Unused, it is detached at once.
  void release() noexcept;

  const std::filesystem::path& device() const noexcept { return device_; }
  bool attached() const noexcept { return fd_.valid(); }

 private:
  LoopDevice(std::filesystem::path device, UniqueFd fd)
      : device_(std::move(device)), fd_(std::move(fd)) {}
  std::filesystem::path device_;
  UniqueFd fd_;
};

// The loop devices ("/dev/loop3") whose backing file is `file` (from
// /sys/block/loop*/loop/backing_file). Empty when none.
FCVM_SDK_API std::vector<std::filesystem::path> loop_devices_backed_by(
    const std::filesystem::path& file);

}  // namespace fcvm
