#include "device_finder.h"

#include <time.h>

#include <fstream>
#include <system_error>

namespace fcvm::agent {
namespace {

// First line of a small sysfs attribute, without trailing whitespace.
std::optional<std::string> read_attribute(const std::filesystem::path& p) {
  std::ifstream in(p);
  if (!in) return std::nullopt;
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ' || line.back() == '\0' ||
                           line.back() == '\t' || line.back() == '\r')) {
    line.pop_back();
  }
  return line;
}

}  // namespace

std::optional<std::filesystem::path> DeviceFinder::virtio_port(std::string_view name) const {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(sys_ / "class/virtio-ports", ec)) {
    auto port_name = read_attribute(entry.path() / "name");
    if (!port_name || *port_name != name) continue;
    auto node = dev_ / entry.path().filename();
    if (std::filesystem::exists(node, ec)) return node;
  }
  return std::nullopt;
}

std::string DeviceFinder::disk_letters(std::uint32_t index) {
  // Bijective base 26, as in the kernel's virtblk_name_format().
  std::string s;
  std::uint64_t n = static_cast<std::uint64_t>(index) + 1;
  while (n > 0) {
    --n;
    s.insert(s.begin(), static_cast<char>('a' + n % 26));
    n /= 26;
  }
  return s;
}

std::optional<std::filesystem::path> DeviceFinder::block_device(const DriveRef& drive) const {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(sys_ / "block", ec)) {
    const std::string dev = entry.path().filename().string();
    if (dev.rfind("vd", 0) != 0) continue;
    auto serial = read_attribute(entry.path() / "serial");
    if (!serial || *serial != drive.drive) continue;
    auto node = dev_ / dev;
    if (std::filesystem::exists(node, ec)) return node;
  }
  auto fallback = dev_ / ("vd" + disk_letters(drive.index));
  if (std::filesystem::exists(fallback, ec)) return fallback;
  return std::nullopt;
}

std::optional<std::string> DeviceFinder::interface_by_mac(std::string_view mac) const {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(sys_ / "class/net", ec)) {
    auto address = read_attribute(entry.path() / "address");
    if (address && *address == mac) return entry.path().filename().string();
  }
  return std::nullopt;
}

}  // namespace fcvm::agent
