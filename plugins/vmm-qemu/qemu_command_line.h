// QemuCommandLine: the argv that starts QEMU for a VmSpec (boot) or a RestoreSpec (incoming
// snapshot). Pure: no file-system access, so every case is a unit test.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "accel_choice.h"
#include "fcvm/result.h"
#include "fcvm/vmm.h"
#include "state_file_header.h"

namespace fcvm::qemu {

// What the command line needs to know about the host side.
struct QemuHostOptions {
  std::string binary = "qemu-system-x86_64";
  Accel accel = Accel::tcg;
  // The host TSC frequency (HostTsc::khz()); under TCG the guest is told it. 0: unknown.
  unsigned tsc_khz = 0;
};

class QemuCommandLine {
 public:
  // A fresh boot: guest RAM is DIR/mem mapped shared, so a snapshot can leave it out of
  // the migration stream. Fails with invalid_argument for a spec QEMU would refuse or
  // mis-read (bad ids or MACs, empty kernel, socket paths too long).
  static Result<std::vector<std::string>> for_launch(const VmSpec& spec,
                                                     const QemuHostOptions& host);

  // A restore: `spec.vm` gives the clone's layout and `snapshot` the machine (vcpus, memory,
  // kernel, initrd, command line). File memory: RAM is the memory image mapped private
  // (copy-on-write, never written through). UFFD memory: RAM is anonymous
  // (memory-backend-ram, Firecracker's layout) and filled by the page server through the
  // preload shim (uffd_environment). QEMU waits paused (-S) for `migrate-incoming`.
  static Result<std::vector<std::string>> for_restore(const RestoreSpec& spec,
                                                      const StateFileHeader& snapshot,
                                                      const QemuHostOptions& host);

  // The environment that makes fcvm-uffd-shim (at `shim`) hand the clone's RAM of
  // `snapshot.memory_mib` to the page server at `page_server`.
  static std::vector<std::string> uffd_environment(const std::filesystem::path& shim,
                                                   const std::filesystem::path& page_server,
                                                   const StateFileHeader& snapshot);

  // The kernel command line QEMU gets: `cmdline` plus
  //  - "reboot=t" unless it sets reboot= itself, so that a guest reboot triple-faults and
  //    -no-reboot makes QEMU exit;
  //  - under TCG with a known host TSC, "tsc_early_khz=<kHz> tsc=reliable" unless it sets
  //    tsc= or tsc_early_khz= itself: microvm offers the guest nothing to calibrate its TSC
  //    against, and on a busy host the PIT fallback fails and the guest hangs at boot.
  static std::string kernel_cmdline(const std::string& cmdline, const QemuHostOptions& host);

  // Files QEMU keeps in the VM directory.
  static std::filesystem::path qmp_socket(const std::filesystem::path& vm_dir);
  static std::filesystem::path memory_file(const std::filesystem::path& vm_dir);
  static std::filesystem::path log_file(const std::filesystem::path& vm_dir);

  // A value for QEMU's key=value option syntax: commas doubled.
  static std::string escape(std::string_view value);
};

}  // namespace fcvm::qemu
