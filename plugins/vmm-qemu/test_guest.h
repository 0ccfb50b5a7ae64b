// TestGuest: a scratch directory with a tiny busybox initramfs, for tests that boot QEMU.
//
// The guest's /init reads "fcvm_test=MODE" from the kernel command line:
//   idle      prints its markers and sleeps
//   counter   prints "FCVM-COUNT <n>" with n = 0, 1, 2, ... five times a second
//   poweroff  powers off at once (reboot(RB_POWER_OFF), as the agent does)
//   reboot    reboots at once
// and before that always prints "FCVM-INIT uptime=<seconds>" and one
// "FCVM-DISK <dev> <serial>" line per virtio disk.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "fcvm/result.h"
#include "fcvm/temp_dir.h"
#include "fcvm/vmm.h"

namespace fcvm::qemu::testing {

class TestGuest {
 public:
  // The kernel named by FCVM_TEST_KERNEL, or nullopt (with `why` set) when it is unset or
  // missing: the caller skips.
  static std::optional<std::filesystem::path> kernel(std::string* why);

  // Makes a fresh directory under $TMPDIR (default /tmp) and builds DIR/initrd.gz in it.
  static Result<TestGuest> create();

  // Destruction removes the directory.
  const std::filesystem::path& dir() const { return dir_.path(); }
  const std::filesystem::path& initrd() const { return initrd_; }

  // A spec for VM `name` in DIR/<name>, booting `kernel` in `mode`, with a console log,
  // an agent socket and one 1 MiB raw disk with id "data".
  VmSpec spec(const std::string& name, const std::filesystem::path& kernel,
              const std::string& mode) const;

  // Polls `file` until `done(contents)` holds or `timeout` passes; returns the contents
  // the predicate accepted, or nullopt.
  static std::optional<std::string> wait_for_file(
      const std::filesystem::path& file, const std::function<bool(const std::string&)>& done,
      std::chrono::milliseconds timeout);

  // The "FCVM-COUNT n" values of complete lines of `console`, in order.
  static std::vector<long> counts(const std::string& console);

 private:
  explicit TestGuest(TempDir dir) : dir_(std::move(dir)) {}

  TempDir dir_;
  std::filesystem::path initrd_;
};

}  // namespace fcvm::qemu::testing
