#include "fcvm/host_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "fcvm/unique_fd.h"

namespace fcvm {

std::string describe(const PortMapping& port) {
  return port.proto + " " + port.host_ip + ":" + std::to_string(port.host_port) + " -> " +
         std::to_string(port.guest_port);
}

Status validate_port_mapping(const PortMapping& port) {
  const std::string what = "-p " + port.host_ip + ":" + std::to_string(port.host_port) + ":" +
                           std::to_string(port.guest_port) + "/" + port.proto;
  if (port.proto != "tcp" && port.proto != "udp") {
    return error(Errc::invalid_argument, what + ": protocol must be tcp or udp");
  }
  in_addr addr{};
  if (::inet_pton(AF_INET, port.host_ip.c_str(), &addr) != 1) {
    return error(Errc::invalid_argument, what + ": host IP must be an IPv4 address such as 127.0.0.1");
  }
  if (port.host_port == 0 || port.guest_port == 0) {
    return error(Errc::invalid_argument, what + ": ports must be 1-65535");
  }
  return ok_status();
}

Status check_host_port_free(const PortMapping& port) {
  FCVM_RETURN_IF_ERROR(validate_port_mapping(port));
  UniqueFd sock(::socket(AF_INET, (port.proto == "udp" ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
  if (!sock) return errno_status("socket");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port.host_port);
  ::inet_pton(AF_INET, port.host_ip.c_str(), &sa.sin_addr);
  if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    if (errno == EADDRINUSE) {
      return error(Errc::already_exists, "host port " + port.host_ip + ":" + std::to_string(port.host_port) +
                                             "/" + port.proto + " is in use; pick another -p host port");
    }
    if (errno == EADDRNOTAVAIL) {
      return error(Errc::invalid_argument, "-p: " + port.host_ip + " is not an address of this host");
    }
    return errno_status("bind " + port.host_ip + ":" + std::to_string(port.host_port));
  }
  return ok_status();
}

bool host_ports_overlap(const PortMapping& a, const PortMapping& b) {
  if (a.proto != b.proto || a.host_port != b.host_port) return false;
  return a.host_ip == b.host_ip || a.host_ip == "0.0.0.0" || b.host_ip == "0.0.0.0";
}

}  // namespace fcvm
