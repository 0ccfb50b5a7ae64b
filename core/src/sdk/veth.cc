#include "fcvm/veth.h"

#include <net/if.h>

#include "fcvm/route_netlink.h"

namespace fcvm {

Veth::Veth(Veth&& o) noexcept
    : ns_(std::move(o.ns_)), name_(std::exchange(o.name_, {})), peer_(std::move(o.peer_)) {}

Veth& Veth::operator=(Veth&& o) noexcept {
  if (this != &o) {
    if (!name_.empty()) (void)ns_.run_in([&] { return remove(name_); });
    ns_ = std::move(o.ns_);
    name_ = std::exchange(o.name_, {});
    peer_ = std::move(o.peer_);
  }
  return *this;
}

Veth::~Veth() {
  if (!name_.empty()) (void)ns_.run_in([&] { return remove(name_); });
}

Result<Veth> Veth::create(const std::string& name, const std::string& peer, const Netns& peer_ns) {
  for (const auto& n : {name, peer}) {
    if (n.empty() || n.size() >= IFNAMSIZ) {
      return error(Errc::invalid_argument, "bad interface name '" + n + "' (1-15 characters)");
    }
  }
  auto here = Netns::current();
  if (!here) return here.status();
  auto rt = RouteNetlink::open();
  if (!rt) return rt.status();
  FCVM_RETURN_IF_ERROR(rt->add_veth(name, peer, peer_ns.fd()));
  Veth veth;
  veth.ns_ = std::move(*here);
  veth.name_ = name;
  veth.peer_ = peer;
  return veth;
}

Status Veth::remove(const std::string& name) {
  auto rt = RouteNetlink::open();
  if (!rt) return rt.status();
  return rt->delete_link(name);
}

}  // namespace fcvm
