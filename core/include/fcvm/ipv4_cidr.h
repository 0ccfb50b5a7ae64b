// Ipv4Cidr: an IPv4 address with its prefix length ("10.0.2.15/24"), parsed into a typed
// value with an error that says what is wrong, for the network plugins and core.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

struct Ipv4Cidr {
  std::uint32_t address = 0;  // host byte order
  int prefix = 32;            // 0-32

  std::uint32_t mask() const { return prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix); }
  // The address in dotted-quad form, without the prefix.
  FCVM_SDK_API std::string address_text() const;
  bool operator==(const Ipv4Cidr&) const = default;
};

// "A.B.C.D/N" with N in 0-32; invalid_argument naming the text and what is wrong (no
// '/', a bad address, a prefix that is not a number from 0 to 32).
FCVM_SDK_API Result<Ipv4Cidr> parse_ipv4_cidr(std::string_view text);

}  // namespace fcvm
