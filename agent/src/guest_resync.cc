#include "guest_resync.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/random.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "console_log.h"
#include "owned_fd.h"

namespace fcvm::agent {

bool step_wall_clock(std::int64_t wall_time_ns) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(wall_time_ns / 1000000000);
  ts.tv_nsec = static_cast<long>(wall_time_ns % 1000000000);
  if (::clock_settime(CLOCK_REALTIME, &ts) != 0) {
    log_line("attach: set the wall clock: " + errno_text(errno));
    return false;
  }
  return true;
}

std::vector<unsigned char> decode_hex(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::vector<unsigned char> out;
  if (hex.size() % 2 != 0) return out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out.push_back(static_cast<unsigned char>(hi << 4 | lo));
  }
  return out;
}

bool add_entropy(const std::vector<unsigned char>& bytes, const char* urandom) {
  if (bytes.empty()) return false;
  OwnedFd fd(::open(urandom, O_WRONLY | O_CLOEXEC));
  if (!fd) {
    log_line(std::string("attach: open ") + urandom + ": " + errno_text(errno));
    return false;
  }
  // rand_pool_info ends in a flexible array: give it room for the bytes.
  std::vector<unsigned char> request(sizeof(rand_pool_info) + bytes.size());
  auto* info = reinterpret_cast<rand_pool_info*>(request.data());
  info->entropy_count = static_cast<int>(bytes.size() * 8);
  info->buf_size = static_cast<int>(bytes.size());
  std::memcpy(request.data() + sizeof(rand_pool_info), bytes.data(), bytes.size());
  if (::ioctl(fd.get(), RNDADDENTROPY, info) == 0) {
    // Crediting entropy to a CRNG that is already initialised does not rekey it (it would
    // reseed only on its own schedule, up to a minute later): force it now, so that a clone
    // draws nothing its siblings draw.
    if (::ioctl(fd.get(), RNDRESEEDCRNG) != 0) {
      log_line(std::string("attach: reseed the CRNG through ") + urandom + ": " + errno_text(errno));
      return false;
    }
    return true;
  }
  const ssize_t n = ::write(fd.get(), bytes.data(), bytes.size());
  if (n != static_cast<ssize_t>(bytes.size())) {
    log_line(std::string("attach: reseed the RNG through ") + urandom + ": " + errno_text(errno));
    return false;
  }
  return true;
}

bool flush_neighbour_cache(const char* arp_table) {
  std::ifstream in(arp_table);
  std::string line;
  if (!std::getline(in, line)) return true;  // no table (no IPv4): nothing cached
  OwnedFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) {
    log_line("attach: flush the neighbour cache: " + errno_text(errno));
    return false;
  }
  bool all = true;
  // "IP address  HW type  Flags  HW address  Mask  Device"
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string ip, hw_type, flags, mac, mask, device;
    if (!(fields >> ip >> hw_type >> flags >> mac >> mask >> device)) continue;
    arpreq req{};
    auto* addr = reinterpret_cast<sockaddr_in*>(&req.arp_pa);
    addr->sin_family = AF_INET;
    if (::inet_pton(AF_INET, ip.c_str(), &addr->sin_addr) != 1) continue;
    std::strncpy(req.arp_dev, device.c_str(), sizeof req.arp_dev - 1);
    if (::ioctl(sock.get(), SIOCDARP, &req) != 0 && errno != ENXIO) {
      log_line("attach: forget neighbour " + ip + " on " + device + ": " + errno_text(errno));
      all = false;
    }
  }
  return all;
}

}  // namespace fcvm::agent
