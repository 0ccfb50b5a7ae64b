#include "host_support.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace fcvm::firecracker {
namespace {

// Empty when `path` opens read-write, else strerror.
std::string open_problem(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno);
  ::close(fd);
  return {};
}

}  // namespace

HostSupport HostSupport::detect(const std::filesystem::path& sys_module,
                                const std::filesystem::path& dev_kvm,
                                const std::filesystem::path& dev_userfaultfd) {
  HostSupport host;
  std::error_code ec;
  const bool hardware = std::filesystem::exists(sys_module / "kvm_intel", ec) ||
                        std::filesystem::exists(sys_module / "kvm_amd", ec);
  const std::string kvm_open = open_problem(dev_kvm);
  if (!hardware) {
    host.kvm_problem = std::filesystem::exists(sys_module / "kvm_pvm", ec)
                           ? "no hardware KVM: only kvm_pvm is loaded (no VT-x/SVM here); run on "
                             "a host with kvm_intel or kvm_amd, or use vmm-qemu"
                           : "no hardware KVM: neither kvm_intel nor kvm_amd is loaded; enable "
                             "VT-x/SVM and 'modprobe kvm_intel' (or kvm_amd), or use vmm-qemu";
  } else if (!kvm_open.empty()) {
    host.kvm_problem = dev_kvm.string() + " does not open read-write (" + kvm_open +
                       "); add the user to the kvm group or run as root";
  }
  host.kvm = host.kvm_problem.empty();
  const std::string uffd_open = open_problem(dev_userfaultfd);
  if (!uffd_open.empty()) {
    host.uffd_problem = dev_userfaultfd.string() + " does not open read-write (" + uffd_open +
                        "); UFFD restores need Linux 6.1+ and access to it (root, or a udev "
                        "rule giving the user rw)";
  }
  host.uffd = host.uffd_problem.empty();
  return host;
}

}  // namespace fcvm::firecracker
