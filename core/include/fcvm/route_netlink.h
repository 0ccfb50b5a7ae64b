// RouteNetlink: one rtnetlink socket (libnl-route) for links, addresses and routes. The one
// place fcvm configures interfaces; TapDevice, Veth and the network plugins go through it.
//
// A socket acts in the network namespace it was opened in: open it inside Netns::run_in to
// work on a namespace, then use it from any thread (one thread at a time).
// Errors: Status with the operation, the interface and libnl's text.
#pragma once

#include <memory>
#include <string>

#include "fcvm/result.h"
#include "fcvm/visibility.h"

struct nl_sock;

namespace fcvm {

class FCVM_SDK_API RouteNetlink {
 public:
  RouteNetlink(RouteNetlink&&) noexcept;
  RouteNetlink& operator=(RouteNetlink&&) noexcept;
  ~RouteNetlink();

  // Opens and connects a NETLINK_ROUTE socket in the calling thread's network namespace.
  static Result<RouteNetlink> open();

  bool link_exists(const std::string& name);
  // Sets IFF_UP, and the MTU when mtu != 0.
  Status link_up(const std::string& name, unsigned mtu = 0);
  // Adds an IPv4 address "A.B.C.D/N". An address already present is success.
  Status add_address(const std::string& name, const std::string& cidr);
  // Adds the IPv4 default route via `gateway` on `name`.
  Status add_default_route(const std::string& name, const std::string& gateway);
  // Creates a veth pair: `name` here, `peer` moved into the namespace open as `peer_netns_fd`
  // (-1: here too). Nothing is left on failure.
  Status add_veth(const std::string& name, const std::string& peer, int peer_netns_fd);
  Status add_bridge(const std::string& name);
  Status set_master(const std::string& name, const std::string& bridge);
  // Deletes a link. Idempotent: a missing link is success.
  Status delete_link(const std::string& name);

 private:
  explicit RouteNetlink(nl_sock* sock) : sock_(sock) {}
  nl_sock* sock_ = nullptr;
};

}  // namespace fcvm
