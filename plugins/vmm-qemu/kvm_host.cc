#include "kvm_host.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace fcvm::qemu {

KvmHost KvmHost::detect(const std::filesystem::path& sys_module,
                        const std::filesystem::path& dev_kvm) {
  KvmHost host;
  std::error_code ec;
  host.kvm_intel = std::filesystem::exists(sys_module / "kvm_intel", ec);
  host.kvm_amd = std::filesystem::exists(sys_module / "kvm_amd", ec);
  host.kvm_pvm = std::filesystem::exists(sys_module / "kvm_pvm", ec);
  const int fd = ::open(dev_kvm.c_str(), O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    host.dev_kvm_rw = true;
    ::close(fd);
  } else {
    host.dev_kvm_error = std::strerror(errno);
  }
  return host;
}

}  // namespace fcvm::qemu
