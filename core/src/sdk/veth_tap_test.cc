// Veth, TapDevice and RouteNetlink in real namespaces.
#include <gtest/gtest.h>

#include "fcvm/child_process.h"
#include "fcvm/route_netlink.h"
#include "fcvm/tap_device.h"
#include "fcvm/veth.h"
#include "net_test_support.h"

namespace fcvm {
namespace {

using testing::is_root;
using testing::unique_ifname;

bool exists_in(const Netns& ns, const std::string& ifname) {
  bool found = false;
  EXPECT_TRUE(ns.run_in([&] {
                  auto rt = RouteNetlink::open();
                  if (!rt) return rt.status();
                  found = rt->link_exists(ifname);
                  return ok_status();
                }).ok());
  return found;
}

bool exists_here(const std::string& ifname) {
  auto rt = RouteNetlink::open();
  return rt.ok() && rt->link_exists(ifname);
}

TEST(Veth, PeerLandsInTheNamespaceAndBothEndsGoWithTheObject) {
  if (!is_root()) GTEST_SKIP() << "needs root (CAP_NET_ADMIN)";
  auto ns = Netns::create_anonymous();
  ASSERT_TRUE(ns.ok());
  const std::string host = unique_ifname("fvt"), peer = "inside0";
  {
    auto veth = Veth::create(host, peer, *ns);
    ASSERT_TRUE(veth.ok()) << veth.status().message();
    EXPECT_TRUE(exists_here(host));
    EXPECT_FALSE(exists_here(peer));
    EXPECT_TRUE(exists_in(*ns, peer));
    EXPECT_EQ(Veth::create(host, "other0", *ns).status().code(), Errc::already_exists);
  }
  EXPECT_FALSE(exists_here(host));
  EXPECT_FALSE(exists_in(*ns, peer));
  EXPECT_TRUE(Veth::remove(host).ok()) << "removal is idempotent";
}

TEST(Veth, AddressedPairCarriesTraffic) {
  if (!is_root()) GTEST_SKIP() << "needs root (CAP_NET_ADMIN)";
  auto ns = Netns::create_named(unique_ifname("fcvmt-vt"));
  ASSERT_TRUE(ns.ok()) << ns.status().message();
  const std::string host = unique_ifname("fvt", 1);
  auto veth = Veth::create(host, "eth0", *ns);
  ASSERT_TRUE(veth.ok()) << veth.status().message();
  auto rt = RouteNetlink::open();
  ASSERT_TRUE(rt.ok());
  ASSERT_TRUE(rt->add_address(host, "172.31.254.1/30").ok());
  ASSERT_TRUE(rt->add_address(host, "172.31.254.1/30").ok()) << "adding it twice is success";
  ASSERT_TRUE(rt->link_up(host).ok());
  ASSERT_TRUE(ns->run_in([&] {
                  auto inner = RouteNetlink::open();
                  if (!inner) return inner.status();
                  FCVM_RETURN_IF_ERROR(inner->add_address("eth0", "172.31.254.2/30"));
                  FCVM_RETURN_IF_ERROR(inner->link_up("eth0", 1400));
                  FCVM_RETURN_IF_ERROR(inner->link_up("lo"));
                  return inner->add_default_route("eth0", "172.31.254.1");
                }).ok());
  auto ping = run_command({"ip", "netns", "exec", ns->name(), "busybox", "ping", "-c1", "-W5", "172.31.254.1"});
  EXPECT_TRUE(ping.ok()) << ping.status().message();
  auto route = run_command({"ip", "-n", ns->name(), "route", "show", "default"});
  ASSERT_TRUE(route.ok());
  EXPECT_NE(route->find("via 172.31.254.1"), std::string::npos) << *route;
  auto mtu = run_command({"ip", "-n", ns->name(), "link", "show", "eth0"});
  EXPECT_NE(mtu->find("mtu 1400"), std::string::npos) << *mtu;
}

TEST(TapDevice, PersistentTapInANamespaceIsRemovedByTheObject) {
  if (!is_root()) GTEST_SKIP() << "needs root (CAP_NET_ADMIN)";
  auto ns = Netns::create_anonymous();
  ASSERT_TRUE(ns.ok());
  {
    auto tap = TapDevice::create(*ns, "tap0", 1500);
    ASSERT_TRUE(tap.ok()) << tap.status().message();
    EXPECT_TRUE(exists_in(*ns, "tap0"));
    EXPECT_FALSE(exists_here("tap0") && !exists_in(*ns, "tap0"));
    EXPECT_EQ(TapDevice::create(*ns, "tap0").status().code(), Errc::already_exists);
  }
  EXPECT_FALSE(exists_in(*ns, "tap0"));
  EXPECT_TRUE(TapDevice::remove(*ns, "tap0").ok()) << "removal is idempotent";
  EXPECT_EQ(TapDevice::create(*ns, "a-name-far-too-long").status().code(), Errc::invalid_argument);
}

TEST(RouteNetlink, BridgeEnslavesATap) {
  if (!is_root()) GTEST_SKIP() << "needs root (CAP_NET_ADMIN)";
  auto ns = Netns::create_named(unique_ifname("fcvmt-br"));
  ASSERT_TRUE(ns.ok());
  auto tap = TapDevice::create(*ns, "tap0");
  ASSERT_TRUE(tap.ok());
  ASSERT_TRUE(ns->run_in([&] {
                  auto rt = RouteNetlink::open();
                  if (!rt) return rt.status();
                  FCVM_RETURN_IF_ERROR(rt->add_bridge("br0"));
                  return rt->set_master("tap0", "br0");
                }).ok());
  auto shown = run_command({"ip", "-n", ns->name(), "link", "show", "tap0"});
  ASSERT_TRUE(shown.ok());
  EXPECT_NE(shown->find("master br0"), std::string::npos) << *shown;
}

}  // namespace
}  // namespace fcvm
