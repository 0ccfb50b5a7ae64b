// HostSupport: what Firecracker needs from this host, and the fix when it is missing.
#pragma once

#include <filesystem>
#include <string>

namespace fcvm::firecracker {

struct HostSupport {
  // Hardware KVM: kvm_intel or kvm_amd loaded and /dev/kvm opens read-write. (A host with
  // only kvm_pvm has /dev/kvm but no VT-x/SVM; Firecracker guests do not boot there.)
  bool kvm = false;
  std::string kvm_problem;  // why not, with the fix; empty when kvm
  // /dev/userfaultfd opens read-write: restores with UFFD memory work (Firecracker creates
  // its userfaultfd there on Linux 6.1+).
  bool uffd = false;
  std::string uffd_problem;

  // Looks at the module directory and opens (then closes) the device nodes; the paths are
  // parameters so tests can point them at a fake tree.
  static HostSupport detect(const std::filesystem::path& sys_module = "/sys/module",
                            const std::filesystem::path& dev_kvm = "/dev/kvm",
                            const std::filesystem::path& dev_userfaultfd = "/dev/userfaultfd");
};

}  // namespace fcvm::firecracker
