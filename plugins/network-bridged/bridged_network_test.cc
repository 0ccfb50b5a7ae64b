// network-bridged in real namespaces, without a VM: a veth peer in a namespace of the test's
// own stands in for the guest behind the VM's tap.
#include "bridged_network.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <random>
#include <set>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm/nft_table.h"
#include "fcvm/route_netlink.h"
#include "fcvm/tap_device.h"
#include "fcvm/veth.h"
#include "net_test_support.h"

namespace fcvm::bridged {
namespace {

using fcvm::testing::is_root;
using fcvm::testing::tcp_fetch;
using fcvm::testing::TcpResponder;
using fcvm::testing::unique_ifname;

class BridgedNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!is_root()) GTEST_SKIP() << "needs root (network namespaces, veths, nftables)";
    char tmpl[] = "/tmp/fcvm-bridged-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // A /24 of its own per test process (ctest runs each test as one, several at once),
    // away from the default pool.
    const unsigned pid = static_cast<unsigned>(::getpid());
    nlohmann::json config = {{"pool", "100." + std::to_string(96 + (pid >> 8) % 32) + "." + std::to_string(pid & 0xff) + ".0/24"},
                             {"ip_forward", false},
                             {"dns", {"10.0.2.3"}}};
    config.update(extra_config_);
    auto options = Options::from_json(config);
    ASSERT_TRUE(options.ok()) << options.status().message();
    backend_ = std::make_unique<BridgedNetwork>(dir_ / "subnets.json", *options, null_logger());
  }
  void TearDown() override {
    backend_.reset();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  NetworkRequest request(std::vector<PortMapping> ports = {}) {
    return NetworkRequest{fcvm::testing::random_vm_id(), "test-vm", std::move(ports)};
  }

  // Asserts, by listing, that nothing of VM `id` is left: namespace, veth, nft chains,
  // allocation record.
  void expect_nothing_left(const std::string& id) {
    auto netns = run_command({"ip", "netns", "list"});
    ASSERT_TRUE(netns.ok());
    EXPECT_EQ(netns->find("fcvm-" + id), std::string::npos) << *netns;
    auto links = run_command({"ip", "-o", "link", "show"});
    ASSERT_TRUE(links.ok());
    EXPECT_EQ(links->find("fv" + id), std::string::npos) << *links;
    auto nft = NftTable::open("ip", "fcvm");
    ASSERT_TRUE(nft.ok());
    auto chains = nft->chains();
    ASSERT_TRUE(chains.ok());
    for (const auto& c : *chains) EXPECT_EQ(c.find(id), std::string::npos) << c;
    auto alloc = read_file(dir_ / "subnets.json");
    if (alloc.ok()) {
      EXPECT_EQ(alloc->find(id), std::string::npos) << *alloc;
    }
  }

  // Replaces the VM's tap with a veth "tap0" whose peer eth0 sits in `guest` as the guest
  // would: 10.0.2.15/24, default route via 10.0.2.2.
  void stand_in_guest(const NetworkLease& lease, const Netns& guest) {
    auto vm_ns = Netns::open_named(lease.extra["netns"].get<std::string>());
    ASSERT_TRUE(vm_ns.ok());
    ASSERT_TRUE(TapDevice::remove(*vm_ns, lease.tap).ok());
    ASSERT_TRUE(vm_ns->run_in([&] {
                      auto veth = Veth::create(lease.tap, "eth0", guest);
                      if (!veth) return veth.status();
                      veth->release();
                      auto rt = RouteNetlink::open();
                      FCVM_RETURN_IF_ERROR(rt->add_address(lease.tap, lease.guest.gateway + "/24"));
                      return rt->link_up(lease.tap);
                    }).ok());
    ASSERT_TRUE(guest.run_in([&] {
                      auto rt = RouteNetlink::open();
                      FCVM_RETURN_IF_ERROR(rt->link_up("lo"));
                      FCVM_RETURN_IF_ERROR(rt->add_address("eth0", lease.guest.address));
                      FCVM_RETURN_IF_ERROR(rt->link_up("eth0"));
                      return rt->add_default_route("eth0", lease.guest.gateway);
                    }).ok());
  }

  nlohmann::json extra_config_ = nlohmann::json::object();
  std::filesystem::path dir_;
  std::unique_ptr<BridgedNetwork> backend_;
};

TEST_F(BridgedNetworkTest, PublishedPortAnswersFromLocalhostThroughDnat) {
  const std::uint16_t host_port = fcvm::testing::free_tcp_port(), loopback_port = fcvm::testing::free_tcp_port();
  auto req = request({{"tcp", "0.0.0.0", host_port, 8080}, {"tcp", "127.0.0.2", loopback_port, 8080}});
  auto lease = backend_->setup(req);
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  {
    auto guest = Netns::create_anonymous();
    ASSERT_TRUE(guest.ok());
    stand_in_guest(*lease, *guest);
    TcpResponder server(&*guest, "10.0.2.15", 8080, "guest");
    ASSERT_TRUE(server.status().ok()) << server.status().message();

    auto reply = tcp_fetch(nullptr, "127.0.0.1", host_port);
    ASSERT_TRUE(reply.ok()) << reply.status().message();
    // The guest sees the host end of the VM's /30 (masqueraded), never 127.0.0.1.
    EXPECT_EQ(*reply, "guest from-peer=" + lease->extra["host_ip"].get<std::string>() + "\n");
    auto on_loopback_ip = tcp_fetch(nullptr, "127.0.0.2", loopback_port);
    ASSERT_TRUE(on_loopback_ip.ok()) << on_loopback_ip.status().message();
    EXPECT_EQ(*on_loopback_ip, "guest from-peer=" + lease->extra["host_ip"].get<std::string>() + "\n");
    // A port bound to 127.0.0.2 only is not published on 127.0.0.1.
    EXPECT_FALSE(tcp_fetch(nullptr, "127.0.0.1", loopback_port).ok());
    // The guest reaches its gateway (the namespace's end of its link).
    auto ping = run_command({"nsenter", "--net=" + guest->join_path().string(), "busybox", "ping", "-c1", "-W5",
                             lease->guest.gateway});
    EXPECT_TRUE(ping.ok()) << ping.status().message();
  }
  ASSERT_TRUE(backend_->teardown(*lease).ok());
  expect_nothing_left(req.vm_id);
  EXPECT_FALSE(tcp_fetch(nullptr, "127.0.0.1", host_port).ok()) << "the DNAT went with the VM";
}

TEST_F(BridgedNetworkTest, GuestEgressIsMasqueradedToTheHost) {
  auto req = request();
  auto lease = backend_->setup(req);
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  auto guest = Netns::create_anonymous();
  ASSERT_TRUE(guest.ok());
  stand_in_guest(*lease, *guest);
  // "Outside": another namespace behind a veth of the host's, forwarding on that link only
  // (the host's ip_forward stays as it is).
  auto outside = Netns::create_anonymous();
  ASSERT_TRUE(outside.ok());
  const unsigned third = static_cast<unsigned>(::getpid()) & 0xff;
  const std::string out_host = "100.81." + std::to_string(third) + ".1", out_peer = "100.81." + std::to_string(third) + ".2";
  {
    auto veth = Veth::create(unique_ifname("fvo"), "eth0", *outside);
    ASSERT_TRUE(veth.ok()) << veth.status().message();
    auto rt = RouteNetlink::open();
    ASSERT_TRUE(rt->add_address(veth->name(), out_host + "/30").ok());
    ASSERT_TRUE(rt->link_up(veth->name()).ok());
    ASSERT_TRUE(write_sysctl("net.ipv4.conf." + veth->name() + ".forwarding", "1").ok());
    ASSERT_TRUE(outside->run_in([&] {
                         auto inner = RouteNetlink::open();
                         FCVM_RETURN_IF_ERROR(inner->add_address("eth0", out_peer + "/30"));
                         FCVM_RETURN_IF_ERROR(inner->link_up("eth0"));
                         return inner->add_default_route("eth0", out_host);
                       }).ok());
    TcpResponder server(&*outside, out_peer, 9000, "outside");
    ASSERT_TRUE(server.status().ok());
    auto reply = tcp_fetch(&*guest, out_peer, 9000);
    ASSERT_TRUE(reply.ok()) << reply.status().message();
    // Masqueraded twice: in the VM's namespace, then on the host out of the outside link.
    EXPECT_EQ(*reply, "outside from-peer=" + out_host + "\n");
  }
  ASSERT_TRUE(backend_->teardown(*lease).ok());
  expect_nothing_left(req.vm_id);
}

TEST_F(BridgedNetworkTest, TenLeasesGetDistinctSubnetsAndAllAreReturned) {
  std::vector<NetworkRequest> reqs;
  std::vector<NetworkLease> leases;
  std::set<std::string> subnets, namespaces;
  for (int i = 0; i < 10; ++i) {
    reqs.push_back(request());
    auto lease = backend_->setup(reqs.back());
    ASSERT_TRUE(lease.ok()) << lease.status().message();
    subnets.insert(lease->extra["subnet"].get<std::string>());
    namespaces.insert(lease->namespaces.at(0).string());
    leases.push_back(*lease);
  }
  EXPECT_EQ(subnets.size(), 10u);
  EXPECT_EQ(namespaces.size(), 10u);
  // A subnet returned on teardown is handed out again; one still held never is.
  const std::string freed = leases[3].extra["subnet"];
  ASSERT_TRUE(backend_->teardown(leases[3]).ok());
  auto again = backend_->setup(request());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->extra["subnet"], freed);
  leases[3] = *again;
  for (size_t i = 0; i < leases.size(); ++i) {
    ASSERT_TRUE(backend_->teardown(leases[i]).ok());
    expect_nothing_left(leases[i].extra["vm_id"]);
  }
}

// Allocations are by address: a process configured with another pool that overlaps this
// one never hands out a /30 this one holds.
TEST_F(BridgedNetworkTest, AnOverlappingPoolOfAnotherProcessSkipsTheSubnetsHeld) {
  const std::string third = std::to_string((::getpid() & 0x7f) * 2);
  auto narrow = Options::from_json({{"pool", "100.84." + third + ".0/24"}, {"ip_forward", false}});
  auto wide = Options::from_json({{"pool", "100.84." + third + ".0/23"}, {"ip_forward", false}});
  ASSERT_TRUE(narrow.ok() && wide.ok());
  BridgedNetwork a(dir_ / "shared.json", *narrow, null_logger());
  BridgedNetwork b(dir_ / "shared.json", *wide, null_logger());
  auto first = a.setup(request());
  ASSERT_TRUE(first.ok()) << first.status().message();
  auto second = b.setup(request());
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_NE(first->extra["subnet"], second->extra["subnet"]);
  EXPECT_TRUE(a.teardown(*first).ok());
  EXPECT_TRUE(b.teardown(*second).ok());
}

TEST_F(BridgedNetworkTest, TeardownWorksFromThePersistedLeaseAndTwice) {
  auto req = request({{"tcp", "0.0.0.0", fcvm::testing::free_tcp_port(), 80}});
  auto lease = backend_->setup(req);
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  const NetworkLease persisted = nlohmann::json::parse(nlohmann::json(*lease).dump()).get<NetworkLease>();
  auto other = std::make_unique<BridgedNetwork>(dir_ / "subnets.json", *Options::from_json({{"pool", "100.80.0.0/24"}}), null_logger());
  EXPECT_TRUE(other->teardown(persisted).ok());
  expect_nothing_left(req.vm_id);
  EXPECT_TRUE(other->teardown(persisted).ok()) << "idempotent";
}

TEST_F(BridgedNetworkTest, AHostPortTakenByAnotherVmOrAProcessIsRefusedAndNothingIsLeft) {
  const std::uint16_t port = fcvm::testing::free_tcp_port();
  auto first = backend_->setup(request({{"tcp", "0.0.0.0", port, 80}}));
  ASSERT_TRUE(first.ok()) << first.status().message();
  auto req = request({{"tcp", "127.0.0.1", port, 80}});
  auto second = backend_->setup(req);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("is published by VM test-vm"), std::string::npos)
      << second.status().message();
  expect_nothing_left(req.vm_id);
  // The same guest port on another host port is fine.
  auto third = backend_->setup(request({{"tcp", "0.0.0.0", fcvm::testing::free_tcp_port(), 80}}));
  EXPECT_TRUE(third.ok()) << third.status().message();

  UniqueFd busy(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const std::uint16_t busy_port = fcvm::testing::free_tcp_port();
  sockaddr_in sa = fcvm::testing::ipv4_sockaddr("127.0.0.1", busy_port);
  ASSERT_EQ(::bind(busy.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(busy.get(), 1), 0);
  auto req4 = request({{"tcp", "0.0.0.0", busy_port, 80}});
  auto fourth = backend_->setup(req4);
  ASSERT_FALSE(fourth.ok());
  EXPECT_NE(fourth.status().message().find("is in use"), std::string::npos) << fourth.status().message();
  expect_nothing_left(req4.vm_id);

  ASSERT_TRUE(backend_->teardown(*first).ok());
  ASSERT_TRUE(backend_->teardown(*third).ok());
}

TEST_F(BridgedNetworkTest, AnExhaustedPoolIsAOneLineErrorAndLeavesNothing) {
  auto options = Options::from_json({{"pool", "100.82." + std::to_string(::getpid() & 0xff) + ".0/30"},
                                     {"ip_forward", false}});
  ASSERT_TRUE(options.ok());
  BridgedNetwork tiny(dir_ / "tiny.json", *options, null_logger());
  auto first = tiny.setup(request());
  ASSERT_TRUE(first.ok()) << first.status().message();
  auto req = request();
  auto second = tiny.setup(req);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("is exhausted"), std::string::npos) << second.status().message();
  EXPECT_EQ(second.status().message().find('\n'), std::string::npos);
  expect_nothing_left(req.vm_id);
  ASSERT_TRUE(tiny.teardown(*first).ok());
}

TEST_F(BridgedNetworkTest, CloneKeepsTheGuestSideAndGetsItsOwnHostSide) {
  auto original = backend_->setup(request({{"tcp", "0.0.0.0", fcvm::testing::free_tcp_port(), 8080}}));
  ASSERT_TRUE(original.ok()) << original.status().message();
  auto clone_req = request({{"tcp", "0.0.0.0", fcvm::testing::free_tcp_port(), 8080}});
  auto clone = backend_->setup_clone(*original, clone_req);
  ASSERT_TRUE(clone.ok()) << clone.status().message();
  EXPECT_EQ(clone->tap, original->tap);
  EXPECT_EQ(clone->guest.address, original->guest.address);
  EXPECT_EQ(clone->guest.mac, original->guest.mac);
  EXPECT_NE(clone->extra["subnet"], original->extra["subnet"]);
  EXPECT_NE(clone->namespaces, original->namespaces);
  {
    auto guest = Netns::create_anonymous();
    ASSERT_TRUE(guest.ok());
    stand_in_guest(*clone, *guest);
    TcpResponder server(&*guest, "10.0.2.15", 8080, "clone");
    auto reply = tcp_fetch(nullptr, "127.0.0.1", clone->ports.at(0).host_port);
    ASSERT_TRUE(reply.ok()) << reply.status().message();
    EXPECT_EQ(reply->rfind("clone", 0), 0u) << *reply;
  }
  ASSERT_TRUE(backend_->teardown(*clone).ok());
  ASSERT_TRUE(backend_->teardown(*original).ok());
  expect_nothing_left(clone_req.vm_id);
}

TEST(BridgedOptions, BadConfigNamesTheKey) {
  auto bad_pool = Options::from_json({{"pool", "172.30.0.1/16"}});
  ASSERT_FALSE(bad_pool.ok());
  EXPECT_NE(bad_pool.status().message().find("network-bridged.pool"), std::string::npos);
  EXPECT_FALSE(Options::from_json({{"pool", "nonsense"}}).ok());
  // Prefixes are parsed, not stoi'd: trailing junk and overflow are errors that say so.
  for (const char* pool : {"172.30.0.0/16x", "172.30.0.0/99999999999", "172.30.0.0/"}) {
    auto r = Options::from_json({{"pool", pool}});
    ASSERT_FALSE(r.ok()) << pool;
    EXPECT_NE(r.status().message().find("prefix length"), std::string::npos) << r.status().message();
  }
  auto bad_guest = Options::from_json({{"guest_address", "10.0.2.15"}});
  ASSERT_FALSE(bad_guest.ok());
  EXPECT_NE(bad_guest.status().message().find("network-bridged.guest_address: '10.0.2.15' is not an IPv4 CIDR"),
            std::string::npos)
      << bad_guest.status().message();
  EXPECT_FALSE(Options::from_json({{"guest_gateway", "192.168.1.1"}}).ok());
  auto ok = Options::from_json({{"pool", "172.30.0.0/16"}});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->capacity(), 16384u);
}

TEST(BridgedRules, PublishedPortsDnatOnPreroutingAndOutput) {
  BridgedState st;
  st.host_veth = "fvabc";
  st.ns_ip = "172.30.0.2";
  const std::string rules = BridgedNetwork::host_rules("abc", st, {{"udp", "127.0.0.5", 5353, 53}});
  EXPECT_NE(rules.find("add rule ip fcvm vm_abc_pre ip daddr 127.0.0.5 udp dport 5353 dnat to 172.30.0.2:53"),
            std::string::npos)
      << rules;
  EXPECT_NE(rules.find("add rule ip fcvm vm_abc_out ip daddr 127.0.0.5 udp dport 5353 dnat to 172.30.0.2:53"),
            std::string::npos);
  EXPECT_NE(rules.find("oifname \"fvabc\" ip saddr 127.0.0.0/8 masquerade"), std::string::npos);
}

}  // namespace
}  // namespace fcvm::bridged
