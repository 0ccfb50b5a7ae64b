#include "network_setup.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <string>

#include "owned_fd.h"
#include "setup_error.h"

namespace fcvm::agent {
namespace {

constexpr std::chrono::milliseconds kInterfaceTimeout{5000};

OwnedFd control_socket() {
  OwnedFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) throw_errno("socket(AF_INET) for interface configuration");
  return s;
}

ifreq request_for(const std::string& name) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  return ifr;
}

sockaddr_in ipv4(const std::string& text) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (::inet_pton(AF_INET, text.c_str(), &sa.sin_addr) != 1) {
    throw SetupError("not an IPv4 address: " + text);
  }
  return sa;
}

sockaddr_in netmask(int prefix_length) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  const std::uint32_t mask = prefix_length == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix_length);
  sa.sin_addr.s_addr = htonl(mask);
  return sa;
}

void set_up(int sock, const std::string& name) {
  ifreq ifr = request_for(name);
  if (::ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) throw_errno("read flags of " + name);
  ifr.ifr_flags |= IFF_UP;
  if (::ioctl(sock, SIOCSIFFLAGS, &ifr) != 0) throw_errno("bring " + name + " up");
}

}  // namespace

void NetworkSetup::bring_up_loopback() {
  OwnedFd sock = control_socket();
  set_up(sock.get(), "lo");
}

void NetworkSetup::configure(const Network& net, const DeviceFinder& devices) {
  auto found = DeviceFinder::wait_for([&] { return devices.interface_by_mac(net.mac); },
                                      kInterfaceTimeout);
  if (!found) throw SetupError("network: no interface has MAC " + net.mac);
  std::string name = *found;
  OwnedFd sock = control_socket();
  const int s = sock.get();

  if (name != "eth0") {
    ifreq probe = request_for("eth0");
    if (::ioctl(s, SIOCGIFINDEX, &probe) != 0) {  // eth0 is free: take the name
      ifreq ifr = request_for(name);
      std::strncpy(ifr.ifr_newname, "eth0", IFNAMSIZ - 1);
      if (::ioctl(s, SIOCSIFNAME, &ifr) != 0) throw_errno("rename " + name + " to eth0");
      name = "eth0";
    }
  }

  if (net.mtu != 0) {
    ifreq ifr = request_for(name);
    ifr.ifr_mtu = static_cast<int>(net.mtu);
    if (::ioctl(s, SIOCSIFMTU, &ifr) != 0) {
      throw_errno("set MTU " + std::to_string(net.mtu) + " on " + name);
    }
  }
  {
    ifreq ifr = request_for(name);
    sockaddr_in addr = ipv4(net.address);
    std::memcpy(&ifr.ifr_addr, &addr, sizeof addr);
    if (::ioctl(s, SIOCSIFADDR, &ifr) != 0) throw_errno("set address " + net.address + " on " + name);
  }
  {
    ifreq ifr = request_for(name);
    sockaddr_in mask = netmask(net.prefix_length);
    std::memcpy(&ifr.ifr_netmask, &mask, sizeof mask);
    if (::ioctl(s, SIOCSIFNETMASK, &ifr) != 0) {
      throw_errno("set prefix length /" + std::to_string(net.prefix_length) + " on " + name);
    }
  }
  set_up(s, name);

  if (!net.gateway.empty()) {
    rtentry rt{};
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    sockaddr_in gw = ipv4(net.gateway);
    sockaddr_in mask = netmask(0);
    std::memcpy(&rt.rt_dst, &dst, sizeof dst);
    std::memcpy(&rt.rt_gateway, &gw, sizeof gw);
    std::memcpy(&rt.rt_genmask, &mask, sizeof mask);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    rt.rt_dev = name.data();
    if (::ioctl(s, SIOCADDRT, &rt) != 0 && errno != EEXIST) {
      throw_errno("add default route via " + net.gateway + " on " + name);
    }
  }
}

}  // namespace fcvm::agent
