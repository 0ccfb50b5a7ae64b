// Finds the guest devices the plan refers to by reading sysfs. The roots are parameters so
// tests can point them at a fake tree.
#pragma once

#include <time.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "fcvm/agent_plan.h"

namespace fcvm::agent {

class DeviceFinder {
 public:
  explicit DeviceFinder(std::filesystem::path sys_root = "/sys",
                        std::filesystem::path dev_root = "/dev")
      : sys_(std::move(sys_root)), dev_(std::move(dev_root)) {}

  // The /dev node of the virtio-serial port called `name` (e.g. /dev/vport1p1), found via
  // /sys/class/virtio-ports/*/name; nullopt if no such port exists (yet).
  std::optional<std::filesystem::path> virtio_port(std::string_view name) const;

  // The /dev node of a virtio-blk drive: the vd* device whose serial equals drive.drive,
  // else /dev/vd<letters(index)>. nullopt if neither exists (yet).
  std::optional<std::filesystem::path> block_device(const DriveRef& drive) const;

  // The network interface whose MAC (lower case) equals `mac`; nullopt if none.
  std::optional<std::string> interface_by_mac(std::string_view mac) const;

  // Polls `find` every 10 ms until it yields a value or `timeout` passes; devices probed
  // asynchronously may appear shortly after the agent starts.
  template <typename Find>
  static auto wait_for(Find find, std::chrono::milliseconds timeout) -> decltype(find());

  // "a", "b", ..., "z", "aa", ... like the kernel's virtio-blk naming (index 0 -> "a").
  static std::string disk_letters(std::uint32_t index);

 private:
  std::filesystem::path sys_;
  std::filesystem::path dev_;
};

template <typename Find>
auto DeviceFinder::wait_for(Find find, std::chrono::milliseconds timeout) -> decltype(find()) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto found = find();
    if (found || std::chrono::steady_clock::now() >= deadline) return found;
    struct timespec ts {0, 10 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace fcvm::agent
