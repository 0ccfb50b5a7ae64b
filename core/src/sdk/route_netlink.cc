#include "fcvm/route_netlink.h"

#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>

#include <utility>

namespace fcvm {
namespace {

Status nl_status(const std::string& what, int err) {
  return error(err == -NLE_PERM ? Errc::unavailable : Errc::io,
               what + ": " + nl_geterror(err < 0 ? -err : err) +
                   (err == -NLE_PERM ? " (needs CAP_NET_ADMIN)" : ""));
}

struct LinkPut {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
using LinkPtr = std::unique_ptr<rtnl_link, LinkPut>;
struct AddrPut {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
using NlAddrPtr = std::unique_ptr<nl_addr, AddrPut>;

Result<NlAddrPtr> parse_ipv4(const std::string& text) {
  nl_addr* a = nullptr;
  if (int err = nl_addr_parse(text.c_str(), AF_INET, &a); err < 0) {
    return error(Errc::invalid_argument, "not an IPv4 address: " + text);
  }
  return NlAddrPtr(a);
}

Result<LinkPtr> get_link(nl_sock* sock, const std::string& name) {
  rtnl_link* link = nullptr;
  if (int err = rtnl_link_get_kernel(sock, 0, name.c_str(), &link); err < 0) {
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) {
      return error(Errc::not_found, "no network interface " + name);
    }
    return nl_status("look up " + name, err);
  }
  return LinkPtr(link);
}

}  // namespace

RouteNetlink::RouteNetlink(RouteNetlink&& o) noexcept : sock_(std::exchange(o.sock_, nullptr)) {}
RouteNetlink& RouteNetlink::operator=(RouteNetlink&& o) noexcept {
  if (this != &o) {
    if (sock_) nl_socket_free(sock_);
    sock_ = std::exchange(o.sock_, nullptr);
  }
  return *this;
}
RouteNetlink::~RouteNetlink() {
  if (sock_) nl_socket_free(sock_);
}

Result<RouteNetlink> RouteNetlink::open() {
  nl_sock* sock = nl_socket_alloc();
  if (!sock) return error(Errc::io, "netlink: out of memory");
  RouteNetlink rt(sock);
  if (int err = nl_connect(sock, NETLINK_ROUTE); err < 0) return nl_status("connect rtnetlink", err);
  return rt;
}

bool RouteNetlink::link_exists(const std::string& name) { return get_link(sock_, name).ok(); }

Status RouteNetlink::link_up(const std::string& name, unsigned mtu) {
  auto link = get_link(sock_, name);
  if (!link) return link.status();
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (mtu != 0) rtnl_link_set_mtu(change.get(), mtu);
  if (int err = rtnl_link_change(sock_, link->get(), change.get(), 0); err < 0) {
    return nl_status("bring " + name + " up", err);
  }
  return ok_status();
}

Status RouteNetlink::add_address(const std::string& name, const std::string& cidr) {
  auto link = get_link(sock_, name);
  if (!link) return link.status();
  auto local = parse_ipv4(cidr);
  if (!local) return local.status();
  rtnl_addr* addr = rtnl_addr_alloc();
  rtnl_addr_set_ifindex(addr, rtnl_link_get_ifindex(link->get()));
  rtnl_addr_set_local(addr, local->get());
  const int err = rtnl_addr_add(sock_, addr, 0);
  rtnl_addr_put(addr);
  if (err < 0 && err != -NLE_EXIST) return nl_status("add address " + cidr + " to " + name, err);
  return ok_status();
}

Status RouteNetlink::add_default_route(const std::string& name, const std::string& gateway) {
  auto link = get_link(sock_, name);
  if (!link) return link.status();
  auto gw = parse_ipv4(gateway);
  if (!gw) return gw.status();
  auto dst = parse_ipv4("0.0.0.0/0");
  if (!dst) return dst.status();
  rtnl_route* route = rtnl_route_alloc();
  rtnl_route_set_family(route, AF_INET);
  rtnl_route_set_dst(route, dst->get());
  rtnl_nexthop* hop = rtnl_route_nh_alloc();
  rtnl_route_nh_set_gateway(hop, gw->get());
  rtnl_route_nh_set_ifindex(hop, rtnl_link_get_ifindex(link->get()));
  rtnl_route_add_nexthop(route, hop);  // the route owns the hop
  const int err = rtnl_route_add(sock_, route, NLM_F_CREATE);
  rtnl_route_put(route);
  if (err < 0 && err != -NLE_EXIST) return nl_status("add default route via " + gateway, err);
  return ok_status();
}

Status RouteNetlink::add_veth(const std::string& name, const std::string& peer, int peer_netns_fd) {
  LinkPtr link(rtnl_link_veth_alloc());
  if (!link) return error(Errc::io, "netlink: out of memory");
  rtnl_link_set_name(link.get(), name.c_str());
  LinkPtr peer_link(rtnl_link_veth_get_peer(link.get()));
  rtnl_link_set_name(peer_link.get(), peer.c_str());
  if (peer_netns_fd >= 0) rtnl_link_set_ns_fd(peer_link.get(), peer_netns_fd);
  if (int err = rtnl_link_add(sock_, link.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0) {
    if (err == -NLE_EXIST) return error(Errc::already_exists, "network interface " + name + " exists");
    return nl_status("create veth " + name + "/" + peer, err);
  }
  return ok_status();
}

Status RouteNetlink::add_bridge(const std::string& name) {
  if (int err = rtnl_link_bridge_add(sock_, name.c_str()); err < 0) {
    if (err == -NLE_EXIST) return error(Errc::already_exists, "network interface " + name + " exists");
    return nl_status("create bridge " + name, err);
  }
  return ok_status();
}

Status RouteNetlink::set_master(const std::string& name, const std::string& bridge) {
  auto link = get_link(sock_, name);
  if (!link) return link.status();
  auto master = get_link(sock_, bridge);
  if (!master) return master.status();
  if (int err = rtnl_link_enslave(sock_, master->get(), link->get()); err < 0) {
    return nl_status("attach " + name + " to " + bridge, err);
  }
  return ok_status();
}

Status RouteNetlink::delete_link(const std::string& name) {
  LinkPtr link(rtnl_link_alloc());
  rtnl_link_set_name(link.get(), name.c_str());
  if (int err = rtnl_link_delete(sock_, link.get()); err < 0) {
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return ok_status();
    return nl_status("delete " + name, err);
  }
  return ok_status();
}

}  // namespace fcvm
