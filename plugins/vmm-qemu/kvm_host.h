// KvmHost: what this host offers for hardware acceleration, as QEMU would see it.
#pragma once

#include <filesystem>
#include <string>

namespace fcvm::qemu {

struct KvmHost {
  bool kvm_intel = false;   // /sys/module/kvm_intel exists
  bool kvm_amd = false;     // /sys/module/kvm_amd exists
  bool kvm_pvm = false;     // /sys/module/kvm_pvm exists (pagetable VM: no real VT-x/SVM)
  bool dev_kvm_rw = false;  // /dev/kvm opened read-write
  std::string dev_kvm_error;  // why it did not, when it did not

  // Looks at the module directory and the device node; the paths are parameters so tests
  // can point them at a fake tree. No side effects beyond an open/close of the device.
  static KvmHost detect(const std::filesystem::path& sys_module = "/sys/module",
                        const std::filesystem::path& dev_kvm = "/dev/kvm");
};

}  // namespace fcvm::qemu
