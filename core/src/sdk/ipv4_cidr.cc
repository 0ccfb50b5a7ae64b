#include "fcvm/ipv4_cidr.h"

#include <arpa/inet.h>

#include <charconv>

namespace fcvm {

std::string Ipv4Cidr::address_text() const {
  in_addr a{htonl(address)};
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

Result<Ipv4Cidr> parse_ipv4_cidr(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return error(Errc::invalid_argument, "'" + std::string(text) + "' is not an IPv4 CIDR (A.B.C.D/N): " + why);
  };
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return bad("no '/N' prefix length");
  const std::string address(text.substr(0, slash));
  in_addr a{};
  if (::inet_pton(AF_INET, address.c_str(), &a) != 1) return bad("'" + address + "' is not an IPv4 address");
  const std::string_view prefix = text.substr(slash + 1);
  int value = -1;
  auto [end, ec] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), value);
  if (prefix.empty() || ec != std::errc() || end != prefix.data() + prefix.size() || value < 0 || value > 32) {
    return bad("the prefix length must be a number from 0 to 32");
  }
  return Ipv4Cidr{ntohl(a.s_addr), value};
}

}  // namespace fcvm
