#include <cstdio>
#include <random>

#include "fcvm/network.h"

namespace fcvm {

std::string random_guest_mac() {
  std::random_device rd;
  char buf[18];
  std::snprintf(buf, sizeof buf, "02:fc:%02x:%02x:%02x:%02x", rd() & 0xff, rd() & 0xff, rd() & 0xff, rd() & 0xff);
  return buf;
}

}  // namespace fcvm
