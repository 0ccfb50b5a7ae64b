// network-slirp in real namespaces, without a VM, run as an unprivileged user created by
// the fixture. A server inside the VM's user + network namespace, on the guest's address,
// stands in for the guest and answers through the port forwarded on the VM's loopback
// address.
#include "slirp_network.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <iostream>

#include <random>
#include <set>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm/route_netlink.h"
#include "net_test_support.h"

namespace fcvm::slirp {
namespace {

using fcvm::testing::tcp_fetch;

bool alive(const ProcessRef& ref) {
  auto stat = read_file("/proc/" + std::to_string(ref.pid) + "/stat");
  if (!stat) return false;
  auto close = stat->rfind(')');
  std::istringstream rest(stat->substr(close + 2));
  std::string state, field;
  rest >> state;
  for (int i = 4; i <= 22 && (rest >> field); ++i) {
  }
  return state != "Z" && std::stoull(field) == ref.start_time;
}

// Everything of the lease is gone: processes, API socket, loopback record.
std::string leftovers(const std::filesystem::path& dir, const NetworkLease& lease) {
  const auto st = lease.extra.get<SlirpState>();
  std::string out;
  if (alive(st.holder)) out += "holder " + std::to_string(st.holder.pid) + " alive; ";
  if (alive(st.slirp)) out += "slirp4netns " + std::to_string(st.slirp.pid) + " alive; ";
  if (std::filesystem::exists(st.api_socket)) out += st.api_socket + " exists; ";
  auto alloc = read_file(dir / "loopback.json");
  if (alloc.ok() && alloc->find(st.vm_id) != std::string::npos) out += "loopback still recorded; ";
  return out;
}

// The stand-in guest: a process in the lease's namespaces puts the guest's address on the
// bridge, pings slirp's gateway, listens on 10.0.2.15:port and answers one connection.
// Returns its pid once it listens; `error` gets why it could not.
pid_t start_stand_in_guest(const NetworkLease& lease, std::uint16_t port, std::string& error_out) {
  int p[2];
  if (::pipe(p) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    auto fail = [&](const std::string& why) {
      ssize_t ignored = ::write(p[1], why.data(), why.size());
      (void)ignored;
      ::_exit(1);
    };
    for (const auto& ns : lease.namespaces) {
      int fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, 0) != 0) fail("setns " + ns.string() + ": " + std::strerror(errno));
    }
    auto rt = RouteNetlink::open();
    if (!rt) fail(rt.status().message());
    if (Status st = rt->add_address("br0", "10.0.2.15/24"); !st.ok()) fail(st.message());
    if (Status st = rt->add_default_route("br0", "10.0.2.2"); !st.ok()) fail(st.message());
    auto ping = run_command({"busybox", "ping", "-c1", "-W10", "10.0.2.2"});
    if (!ping) fail("the stand-in guest cannot reach its gateway: " + ping.status().message());
    UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa = fcvm::testing::ipv4_sockaddr("10.0.2.15", port);
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(listener.get(), 4) != 0) {
      fail(std::string("listen: ") + std::strerror(errno));
    }
    ssize_t ignored = ::write(p[1], "L", 1);
    (void)ignored;
    ::close(p[1]);
    UniqueFd conn(::accept(listener.get(), nullptr, nullptr));
    const std::string reply = "guest\n";
    ignored = ::write(conn.get(), reply.data(), reply.size());
    ::_exit(0);
  }
  ::close(p[1]);
  std::string got;
  char buf[512];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) {
    got.append(buf, static_cast<size_t>(n));
    if (got == "L") break;
  }
  ::close(p[0]);
  if (got != "L") {
    error_out = got.empty() ? "the stand-in guest died" : got;
    ::waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

// The scenario, run as whoever calls it. Returns "" on success, else what went wrong.
std::string published_port_scenario(const std::filesystem::path& dir) {
  SlirpNetwork backend(dir, *Options::from_json({}), null_logger());
  if (auto probe = backend.probe(); !probe.available) return "probe: " + probe.reason;
  const std::uint16_t port = fcvm::testing::free_tcp_port();
  auto first = backend.setup({fcvm::testing::random_vm_id(), "first", {{"tcp", "0.0.0.0", port, 8080}}});
  if (!first) return "setup: " + first.status().message();
  // The same host port for a second VM: it gets its own loopback address.
  auto second = backend.setup({fcvm::testing::random_vm_id(), "second", {{"tcp", "0.0.0.0", port, 8080}}});
  if (!second) return "second setup: " + second.status().message();
  std::string problems;
  if (first->ports.at(0).host_ip == second->ports.at(0).host_ip) problems += "same loopback address; ";
  if (first->ports.at(0).host_ip.rfind("127.", 0) != 0) problems += "not a loopback address; ";
  std::string why;
  const pid_t guest = start_stand_in_guest(*first, 8080, why);
  if (guest < 0) {
    problems += "stand-in guest: " + why + "; ";
  } else {
    auto reply = tcp_fetch(nullptr, first->ports.at(0).host_ip, port);
    if (!reply) problems += "fetch: " + reply.status().message() + "; ";
    else if (*reply != "guest\n") problems += "reply '" + *reply + "'; ";
    ::waitpid(guest, nullptr, 0);
  }
  for (const auto* lease : {&*first, &*second}) {
    if (Status st = backend.teardown(*lease); !st.ok()) problems += "teardown: " + st.message() + "; ";
    if (Status st = backend.teardown(*lease); !st.ok()) problems += "second teardown: " + st.message() + "; ";
    problems += leftovers(dir, *lease);
  }
  return problems;
}

class SlirpUnprivilegedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create the unprivileged test user";
    user_ = "fcvmt" + std::to_string(::getpid());
    auto added = run_command({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user_});
    ASSERT_TRUE(added.ok()) << added.status().message();
    const passwd* pw = ::getpwnam(user_.c_str());
    ASSERT_NE(pw, nullptr);
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    char tmpl[] = "/tmp/fcvm-slirp-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(::chown(dir_.c_str(), uid_, gid_), 0);
    // Rootless tap devices need /dev/net/tun open to all (Debian's udev default, 0666).
    // Hosts that tightened it are widened for the test and restored after.
    struct stat st {};
    ASSERT_EQ(::stat("/dev/net/tun", &st), 0);
    tun_mode_ = st.st_mode & 07777;
    if ((tun_mode_ & 0006) != 0006) {
      std::cerr << "[ NOTE     ] /dev/net/tun is " << std::oct << tun_mode_ << std::dec
                << "; rootless networking needs 0666: widened for this test, restored after\n";
      ASSERT_EQ(::chmod("/dev/net/tun", tun_mode_ | 0666), 0);
    }
  }
  void TearDown() override {
    if (user_.empty()) return;
    // Nothing of the user's may be left running (slirp4netns, holders).
    auto procs = run_command({"pgrep", "-a", "-u", user_});
    EXPECT_FALSE(procs.ok()) << "left running: " << (procs.ok() ? *procs : "");
    (void)run_command({"userdel", user_});
    if ((tun_mode_ & 0006) != 0006) ::chmod("/dev/net/tun", tun_mode_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Runs `scenario` in a child that dropped to the test user; returns its report.
  std::string run_unprivileged(const std::function<std::string()>& scenario) {
    int p[2];
    EXPECT_EQ(::pipe(p), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(p[0]);
      std::string report;
      if (::setgroups(0, nullptr) != 0 || ::setgid(gid_) != 0 || ::setuid(uid_) != 0) {
        report = "cannot drop privileges";
      } else if (::geteuid() == 0) {
        report = "still root";
      } else {
        // As after an exec by a real user: setuid left us non-dumpable, which makes
        // /proc/self/{uid_map,setgroups} root's.
        ::prctl(PR_SET_DUMPABLE, 1);
        report = scenario();
      }
      if (report.empty()) report = "OK";
      ssize_t ignored = ::write(p[1], report.data(), report.size());
      (void)ignored;
      ::_exit(0);
    }
    ::close(p[1]);
    std::string report;
    char buf[1024];
    for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) report.append(buf, static_cast<size_t>(n));
    ::close(p[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return report;
  }

  std::string user_;
  mode_t tun_mode_ = 0666;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  std::filesystem::path dir_;
};

TEST_F(SlirpUnprivilegedTest, PublishedPortAnswersFromTheVmsLoopbackAddress) {
  EXPECT_EQ(run_unprivileged([&] { return published_port_scenario(dir_); }), "OK");
}

TEST_F(SlirpUnprivilegedTest, UserNamespacesAreUsableUnprivileged) {
  EXPECT_EQ(run_unprivileged([] {
              Status st = SlirpNetwork::check_user_namespaces();
              return st.ok() ? std::string() : st.message();
            }),
            "OK");
}

TEST(SlirpNetwork, TenLeasesGetDistinctLoopbackAddressesAndLeaveNothing) {
  char tmpl[] = "/tmp/fcvm-slirp-ten-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  SlirpNetwork backend(dir, *Options::from_json({}), null_logger());
  if (auto probe = backend.probe(); !probe.available) GTEST_SKIP() << probe.reason;
  std::vector<NetworkLease> leases;
  std::set<std::string> addresses;
  std::set<pid_t> holders;
  for (int i = 0; i < 10; ++i) {
    auto lease = backend.setup({fcvm::testing::random_vm_id(), "vm", {}});
    ASSERT_TRUE(lease.ok()) << lease.status().message();
    addresses.insert(lease->extra["loopback"].get<std::string>());
    holders.insert(lease->extra["holder"]["pid"].get<pid_t>());
    leases.push_back(*lease);
  }
  EXPECT_EQ(addresses.size(), 10u);
  EXPECT_EQ(holders.size(), 10u);
  for (const auto& lease : leases) {
    ASSERT_TRUE(backend.teardown(lease).ok());
    EXPECT_EQ(leftovers(dir, lease), "");
  }
  std::filesystem::remove_all(dir);
}

// A clone keeps the snapshot's guest side (tap0, 10.0.2.15) and gets its own loopback
// address, namespaces and slirp4netns: its published port reaches a guest in its own
// namespace. A lease that is not slirp's is refused and leaves nothing.
TEST(SlirpNetwork, ACloneKeepsTheGuestSideAndIsReachedOnItsOwnAddress) {
  char tmpl[] = "/tmp/fcvm-slirp-clone-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  SlirpNetwork backend(dir, *Options::from_json({}), null_logger());
  if (auto probe = backend.probe(); !probe.available) GTEST_SKIP() << probe.reason;
  auto source = backend.setup({fcvm::testing::random_vm_id(), "source", {}});
  ASSERT_TRUE(source.ok()) << source.status().message();
  const std::uint16_t port = fcvm::testing::free_tcp_port();
  auto clone = backend.setup_clone(*source, {fcvm::testing::random_vm_id(), "clone", {{"tcp", "0.0.0.0", port, 8080}}});
  ASSERT_TRUE(clone.ok()) << clone.status().message();
  EXPECT_EQ(clone->tap, source->tap);
  EXPECT_EQ(clone->guest.address, source->guest.address);
  EXPECT_EQ(clone->guest.mac, source->guest.mac);
  EXPECT_NE(clone->extra["loopback"], source->extra["loopback"]);
  EXPECT_NE(clone->extra["holder"]["pid"], source->extra["holder"]["pid"]);
  std::string why;
  const pid_t guest = start_stand_in_guest(*clone, 8080, why);
  ASSERT_GT(guest, 0) << why;
  auto reply = tcp_fetch(nullptr, clone->ports.at(0).host_ip, port);
  EXPECT_TRUE(reply.ok()) << reply.status().message();
  if (reply.ok()) {
    EXPECT_EQ(*reply, "guest\n");
  }
  ::waitpid(guest, nullptr, 0);

  NetworkLease foreign = *source;
  foreign.tap = "eth7";
  auto refused = backend.setup_clone(foreign, {fcvm::testing::random_vm_id(), "refused", {}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Errc::invalid_argument);
  for (const auto& lease : {*clone, *source}) {
    EXPECT_TRUE(backend.teardown(lease).ok());
    EXPECT_EQ(leftovers(dir, lease), "");
  }
  std::filesystem::remove_all(dir);
}

TEST(SlirpNetwork, RunningOutOfLoopbackAddressesIsAOneLineErrorAndLeavesNothing) {
  char tmpl[] = "/tmp/fcvm-slirp-full-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  auto options = Options::from_json({});
  ASSERT_TRUE(options.ok());
  options->loopback_capacity = 1;
  SlirpNetwork backend(dir, *options, null_logger());
  if (auto probe = backend.probe(); !probe.available) GTEST_SKIP() << probe.reason;
  auto first = backend.setup({fcvm::testing::random_vm_id(), "first", {}});
  ASSERT_TRUE(first.ok()) << first.status().message();
  const std::string id = fcvm::testing::random_vm_id();
  auto second = backend.setup({id, "second", {}});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("all loopback addresses are taken"), std::string::npos)
      << second.status().message();
  EXPECT_EQ(second.status().message().find('\n'), std::string::npos);
  auto alloc = read_file(dir / "loopback.json");
  ASSERT_TRUE(alloc.ok());
  EXPECT_EQ(alloc->find(id), std::string::npos) << *alloc;
  EXPECT_TRUE(backend.teardown(*first).ok());
  EXPECT_EQ(leftovers(dir, *first), "");
  std::filesystem::remove_all(dir);
}

TEST(SlirpNetwork, MissingSlirp4netnsIsAOneLineErrorAndLeavesNothing) {
  char tmpl[] = "/tmp/fcvm-slirp-missing-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  SlirpNetwork backend(dir, *Options::from_json({{"slirp4netns", "slirp4netns-not-installed"}}), null_logger());
  EXPECT_FALSE(backend.probe().available);
  auto lease = backend.setup({fcvm::testing::random_vm_id(), "vm", {}});
  ASSERT_FALSE(lease.ok());
  EXPECT_NE(lease.status().message().find("install the slirp4netns package"), std::string::npos)
      << lease.status().message();
  auto alloc = read_file(dir / "loopback.json");
  EXPECT_TRUE(!alloc.ok() || alloc->find("\"slot\"") == std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(SlirpNetwork, AHostPortInUseIsRefusedBeforeAnythingRuns) {
  char tmpl[] = "/tmp/fcvm-slirp-busy-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  SlirpNetwork backend(dir, *Options::from_json({}), null_logger());
  if (auto probe = backend.probe(); !probe.available) GTEST_SKIP() << probe.reason;
  UniqueFd busy(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const std::uint16_t port = fcvm::testing::free_tcp_port();
  sockaddr_in sa = fcvm::testing::ipv4_sockaddr("127.0.0.1", port);
  ASSERT_EQ(::bind(busy.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(busy.get(), 1), 0);
  auto lease = backend.setup({fcvm::testing::random_vm_id(), "vm", {{"tcp", "127.0.0.1", port, 80}}});
  ASSERT_FALSE(lease.ok());
  EXPECT_NE(lease.status().message().find("is in use"), std::string::npos) << lease.status().message();
  auto alloc = read_file(dir / "loopback.json");
  ASSERT_TRUE(alloc.ok());
  EXPECT_EQ(alloc->find("\"slot\""), std::string::npos) << *alloc;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fcvm::slirp
