#include "fcvm/tap_device.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

#include <cstring>

#include "fcvm/route_netlink.h"

namespace fcvm {

TapDevice::TapDevice(TapDevice&& o) noexcept : ns_(std::move(o.ns_)), name_(std::exchange(o.name_, {})) {}

TapDevice& TapDevice::operator=(TapDevice&& o) noexcept {
  if (this != &o) {
    if (!name_.empty()) (void)remove(ns_, name_);
    ns_ = std::move(o.ns_);
    name_ = std::exchange(o.name_, {});
  }
  return *this;
}

TapDevice::~TapDevice() {
  if (!name_.empty()) (void)remove(ns_, name_);
}

Result<TapDevice> TapDevice::create(const Netns& ns, const std::string& name, unsigned mtu) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return error(Errc::invalid_argument, "bad tap name '" + name + "' (1-15 characters)");
  }
  auto handle = ns.duplicate();
  if (!handle) return handle.status();
  TapDevice tap;
  Status made = ns.run_in([&] {
    auto rt = RouteNetlink::open();
    if (!rt) return rt.status();
    if (rt->link_exists(name)) return error(Errc::already_exists, "network interface " + name + " exists");
    UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!tun) return errno_status("open /dev/net/tun");
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (::ioctl(tun.get(), TUNSETIFF, &ifr) != 0) return errno_status("create tap " + name);
    if (::ioctl(tun.get(), TUNSETPERSIST, 1) != 0) return errno_status("make tap " + name + " persistent");
    tap.name_ = name;  // owned from here: the destructor removes it on failure below
    return rt->link_up(name, mtu);
  });
  tap.ns_ = std::move(*handle);
  if (!made.ok()) return made;
  return tap;
}

Status TapDevice::remove(const Netns& ns, const std::string& name) {
  return ns.run_in([&] {
    auto rt = RouteNetlink::open();
    if (!rt) return rt.status();
    return rt->delete_link(name);
  });
}

}  // namespace fcvm
