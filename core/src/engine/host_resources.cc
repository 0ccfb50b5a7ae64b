#include "engine/host_resources.h"

#include <sys/statvfs.h>

#include <fstream>
#include <optional>
#include <string>

namespace fcvm {
namespace {

// MemAvailable from /proc/meminfo, in MiB; nullopt when the kernel does not report it.
std::optional<std::uint64_t> available_memory_mib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib / 1024;
  }
  return std::nullopt;
}

}  // namespace

Status check_host_resources(const std::filesystem::path& vm_parent, unsigned memory_mib) {
  if (auto available = available_memory_mib(); available && *available < memory_mib) {
    return error(Errc::unavailable,
                 "not enough host memory for the guest: " + std::to_string(*available) +
                     " MiB available, --memory asks for " + std::to_string(memory_mib) +
                     " MiB; lower --memory or stop other VMs");
  }
  std::filesystem::path dir = vm_parent;
  std::error_code ec;
  while (!std::filesystem::exists(dir, ec) && dir.has_parent_path() && dir != dir.parent_path()) {
    dir = dir.parent_path();
  }
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) return errno_status("statvfs " + dir.string());
  const std::uint64_t free_mib =
      static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize / (1024 * 1024);
  const std::uint64_t needed_mib = memory_mib + kVmDiskSlackMib;
  if (free_mib < needed_mib) {
    return error(Errc::unavailable,
                 "not enough free space in " + dir.string() + " for the guest's RAM file: " +
                     std::to_string(free_mib) + " MiB free, the VM needs " +
                     std::to_string(needed_mib) + " MiB (--memory " + std::to_string(memory_mib) +
                     " MiB + " + std::to_string(kVmDiskSlackMib) +
                     " MiB); free some space, lower --memory or pass --data-dir on a larger "
                     "filesystem");
  }
  return ok_status();
}

}  // namespace fcvm
