// Networking with real microVMs: the example image's busybox httpd, published with -p,
// answers an HTTP GET from the host, for network-bridged and network-slirp; the guest
// reaches its gateway; two VMs publish the same guest port on different host ports; and
// after stop + gc, or kill -9 + gc, nothing of fcvm's networking is left.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "fcvm/atomic_file.h"
#include "fcvm_cli.h"
#include "net_test_support.h"

namespace fcvm::test {
namespace {

// An HTTP GET; retried while httpd in the freshly started guest does not listen yet.
std::string http_get(const std::string& ip, std::uint16_t port, std::chrono::seconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa = fcvm::testing::ipv4_sockaddr(ip, port);
    std::string out;
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
      const std::string req = "GET / HTTP/1.0\r\nHost: x\r\n\r\n";
      if (::write(s.get(), req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
        char buf[4096];
        for (ssize_t n; (n = ::read(s.get(), buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
      }
    }
    if (out.rfind("HTTP/1.", 0) == 0 || std::chrono::steady_clock::now() > deadline) return out;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

std::string command_output(const std::vector<std::string>& argv) {
  auto out = run_command(argv);
  return out.ok() ? *out : "";
}

class NetworkVmTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
    cli_ = std::make_unique<FcvmCli>();
  }
  void TearDown() override {
    if (cli_) {
      cli_->run({"gc"});
      expect_nothing_left();
    }
  }

  // The host's ip_forward stays as it is: these tests reach guests from the host only.
  std::vector<std::string> run_args(std::vector<std::string> args) const {
    const auto config = cli_->data_dir() / "config.json";
    if (!std::filesystem::exists(config)) {
      std::ofstream(config) << R"({"plugin_config": {"network-bridged": {"ip_forward": false}}})";
    }
    args.insert(args.begin(), {"--config", config.string(), "podman", "run", "--network", GetParam(), "--kernel",
                               FcvmCli::kernel().string()});
    return args;
  }

  // Where a published port answers: the address the plugin recorded for it.
  std::string host_ip_of(const std::string& name) const {
    auto rec = cli_->record(name);
    return rec["network"]["ports"].at(0)["host_ip"].get<std::string>() == "0.0.0.0"
               ? "127.0.0.1"
               : rec["network"]["ports"].at(0)["host_ip"].get<std::string>();
  }

  // By listing: no namespace, veth, nft chain, slirp4netns or holder process of this
  // test's VMs (their ids are in `ids_`), and no allocation left in the data dir.
  void expect_nothing_left() {
    const std::string netns = command_output({"ip", "netns", "list"});
    const std::string links = command_output({"ip", "-o", "link", "show"});
    const std::string nft = command_output({"nft", "list", "table", "ip", "fcvm"});
    for (const auto& id : ids_) {
      EXPECT_EQ(netns.find("fcvm-" + id), std::string::npos) << netns;
      EXPECT_EQ(links.find("fv" + id), std::string::npos) << links;
      EXPECT_EQ(nft.find("vm_" + id), std::string::npos) << nft;
    }
    for (pid_t pid : pids_) {
      // Dead is dead: a zombie waiting for init to reap it holds nothing.
      auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
      const bool running = stat.ok() && stat->find(") Z ") == std::string::npos &&
                           (stat->find("(slirp4netns)") != std::string::npos ||
                            stat->find("(fcvm-nsholder)") != std::string::npos);
      EXPECT_FALSE(running) << "left running: " << (stat.ok() ? *stat : "");
    }
    // network-bridged's allocations are the host's (other tests' VMs may hold some).
    for (const std::filesystem::path& file : {std::filesystem::path("/run/fcvm/network-bridged/subnets.json"),
                                             cli_->data_dir() / "network-slirp/loopback.json"}) {
      auto text = read_file(file);
      if (!text.ok()) continue;
      for (const auto& id : ids_) EXPECT_EQ(text->find(id), std::string::npos) << file << ": " << *text;
    }
  }

  void remember(const std::string& name) {
    auto rec = cli_->record(name);
    if (rec.is_null()) return;
    ids_.push_back(rec["id"].get<std::string>());
    const auto extra = rec["network"].value("extra", nlohmann::json::object());
    for (const char* proc : {"holder", "slirp"}) {
      if (extra.contains(proc)) pids_.push_back(extra[proc]["pid"].get<pid_t>());
    }
  }

  std::unique_ptr<FcvmCli> cli_;
  std::vector<std::string> ids_;
  std::vector<pid_t> pids_;  // slirp4netns and namespace holders
};

TEST_P(NetworkVmTest, HttpdAnswersOnPublishedPortsOfTwoVmsAndTheGuestReachesItsGateway) {
  const std::uint16_t port_a = fcvm::testing::free_tcp_port(), port_b = fcvm::testing::free_tcp_port();
  auto a = cli_->run(run_args({"-d", "--name", "web-a", "-p", std::to_string(port_a) + ":80",
                               FcvmCli::hello_image(), "httpd", "-f", "-p", "80", "-h", "/www"}));
  ASSERT_EQ(a.code, 0) << a.err;
  remember("web-a");
  auto b = cli_->run(run_args({"-d", "--name", "web-b", "-p", std::to_string(port_b) + ":80",
                               FcvmCli::hello_image(), "httpd", "-f", "-p", "80", "-h", "/www"}));
  ASSERT_EQ(b.code, 0) << b.err;
  remember("web-b");

  const std::string page_a = http_get(host_ip_of("web-a"), port_a, std::chrono::seconds(60));
  EXPECT_NE(page_a.find("Hello from fcvm!"), std::string::npos) << page_a;
  const std::string page_b = http_get(host_ip_of("web-b"), port_b, std::chrono::seconds(60));
  EXPECT_NE(page_b.find("Hello from fcvm!"), std::string::npos) << page_b;

  auto ping = cli_->run({"exec", "web-a", "--", "ping", "-c", "1", "-W", "10", "10.0.2.2"});
  EXPECT_EQ(ping.code, 0) << ping.out << ping.err;
  // eth0 as the lease says: address and prefix, MAC, MTU; the hostname resolves locally.
  const auto guest = cli_->record("web-a")["network"]["guest"];
  auto eth0 = cli_->run({"exec", "web-a", "--", "sh", "-c",
                         "ip -4 -o addr show dev eth0; cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu; "
                         "grep -w web-a /etc/hosts"});
  EXPECT_EQ(eth0.code, 0) << eth0.out << eth0.err;
  EXPECT_NE(eth0.out.find("inet " + guest["address"].get<std::string>()), std::string::npos) << eth0.out;
  EXPECT_NE(eth0.out.find(guest["mac"].get<std::string>() + "\n"), std::string::npos) << eth0.out;
  EXPECT_NE(eth0.out.find("\n" + std::to_string(guest["mtu"].get<unsigned>()) + "\n"), std::string::npos) << eth0.out;
  auto resolv = cli_->run({"exec", "web-a", "--", "cat", "/etc/resolv.conf"});
  if (GetParam() == "network-slirp") {
    EXPECT_EQ(resolv.out, "nameserver 10.0.2.3\n");
  }

  EXPECT_EQ(cli_->run({"stop", "web-a"}).code, 0);
  EXPECT_EQ(cli_->run({"stop", "web-b"}).code, 0);
}

TEST_P(NetworkVmTest, KillNineThenGcLeavesNoNetworkBehind) {
  auto fg = cli_->start(run_args({"--name", "doomed", "-p", std::to_string(fcvm::testing::free_tcp_port()) + ":80",
                                  FcvmCli::hello_image(), "sleep", "600"}));
  ASSERT_TRUE(cli_->wait_status("doomed", "running", std::chrono::seconds(120)));
  remember("doomed");
  ASSERT_TRUE(fg.signal(SIGKILL).ok());
  fg.wait();
  auto gc = cli_->run({"gc"});
  EXPECT_EQ(gc.code, 0) << gc.err;
  EXPECT_TRUE(cli_->record("doomed").is_null());
}

// Clones under TCG are slow: the clone test runs with one network plugin.
class CloneNetworkTest : public NetworkVmTest {
 protected:
  // `args` after the test's config and network plugin (snapshot commands).
  std::vector<std::string> with_global(std::vector<std::string> args) const {
    args.insert(args.begin(), {"--config", (cli_->data_dir() / "config.json").string(), "--network", GetParam()});
    return args;
  }
  // An httpd VM `name` (no startup cache) whose page gains `mark` before any snapshot.
  void start_marked_httpd(const std::string& name, const std::string& mark) {
    auto src = cli_->run(run_args({"-d", "--no-snapshot", "--name", name, FcvmCli::hello_image(), "httpd", "-f",
                                   "-p", "80", "-h", "/www"}));
    ASSERT_EQ(src.code, 0) << src.err;
    remember(name);
    ASSERT_EQ(cli_->run({"exec", name, "sh", "-c", "echo " + mark + " >> /www/index.html"}).code, 0);
  }
};

TEST_P(CloneNetworkTest, ThreeClonesOfOneServeEachAnswerHttpOnTheirOwnPublishedPort) {
  // Written before the snapshot: each clone serves the source's state.
  ASSERT_NO_FATAL_FAILURE(start_marked_httpd("web-src", "cloned-state"));
  auto created = cli_->run(with_global({"snapshot", "create", "web-src", "--tag", "web"}));
  ASSERT_EQ(created.code, 0) << created.err;
  auto serve = cli_->start(with_global({"snapshot", "serve", "web", "--name", "web-serve"}));
  ASSERT_TRUE(cli_->wait_status("web-serve", "running", std::chrono::seconds(60)));
  std::vector<std::pair<std::string, std::uint16_t>> clones;
  for (const char* name : {"web-c1", "web-c2", "web-c3"}) {
    const std::uint16_t port = fcvm::testing::free_tcp_port();
    auto r = cli_->run(with_global({"snapshot", "run", "--pid", std::to_string(serve.pid()), "-d", "--name", name,
                                    "-p", std::to_string(port) + ":80"}));
    ASSERT_EQ(r.code, 0) << name << ": " << r.err;
    remember(name);
    clones.emplace_back(name, port);
  }
  for (const auto& [name, port] : clones) {
    const std::string page = http_get(host_ip_of(name), port, std::chrono::seconds(60));
    EXPECT_NE(page.find("Hello from fcvm!"), std::string::npos) << name << ": " << page;
    EXPECT_NE(page.find("cloned-state"), std::string::npos) << name << ": " << page;
  }
  // The serve takes its clones with it.
  ASSERT_TRUE(serve.signal(SIGTERM).ok());
  ASSERT_TRUE(serve.wait(std::chrono::seconds(120)).has_value());
  EXPECT_EQ(cli_->run({"stop", "web-src"}).code, 0);
  EXPECT_EQ(cli_->run({"snapshot", "rm", "web"}).code, 0);
}

// memory-uffd end to end with a network: two clones whose memory comes from one page server
// answer HTTP on their own ports with the source's state.
TEST_P(CloneNetworkTest, TwoClonesOfOnePageServerAnswerHttpWithTheSourcesState) {
  ASSERT_NO_FATAL_FAILURE(start_marked_httpd("pages-src", "paged-state"));
  ASSERT_EQ(cli_->run(with_global({"snapshot", "create", "pages-src", "--tag", "pages"})).code, 0);
  auto serve = cli_->start(with_global({"snapshot", "serve", "pages", "--name", "pages-serve", "--memory",
                                        "memory-uffd", "--prefetch", "off"}));
  ASSERT_TRUE(cli_->wait_status("pages-serve", "running", std::chrono::seconds(60)));
  for (const char* name : {"pages-c1", "pages-c2"}) {
    const std::uint16_t port = fcvm::testing::free_tcp_port();
    auto r = cli_->run(with_global({"snapshot", "run", "--pid", std::to_string(serve.pid()), "-d", "--name", name,
                                    "-p", std::to_string(port) + ":80"}));
    ASSERT_EQ(r.code, 0) << name << ": " << r.err;
    remember(name);
    const std::string page = http_get(host_ip_of(name), port, std::chrono::seconds(60));
    EXPECT_NE(page.find("paged-state"), std::string::npos) << name << ": " << page;
  }
  // Their pages came from the server: it counts faults for each (its stats file is
  // rewritten at most once a second, so wait for both clients to appear in it).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int counted = 0;
  while (counted < 2 && std::chrono::steady_clock::now() < deadline) {
    counted = 0;
    for (const auto& rec : cli_->ls()) {
      if (rec.value("type", "") == "clone" && rec.contains("memory_server") && rec["memory_server"].is_object() &&
          rec["memory_server"].value("faults", 0) > 0) {
        ++counted;
      }
    }
    if (counted < 2) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(counted, 2) << cli_->ls().dump();
  ASSERT_TRUE(serve.signal(SIGTERM).ok());
  ASSERT_TRUE(serve.wait(std::chrono::seconds(120)).has_value());
  EXPECT_EQ(cli_->run({"stop", "pages-src"}).code, 0);
  EXPECT_EQ(cli_->run({"snapshot", "rm", "pages"}).code, 0);
}

// The whole of `fcvm podman run --network network-slirp -p` as an unprivileged user created
// for the test, with a data dir of its own.
TEST(RootlessNetworkVmTest, HttpdAnswersOnAPortPublishedWithoutRoot) {
  if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
  const std::string user = "fcvmr" + std::to_string(::getpid());
  ASSERT_TRUE(run_command({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user}).ok());
  char tmpl[] = "/tmp/fcvm-rootless-e2e-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  const std::string image_src = FcvmCli::hello_image().substr(4, FcvmCli::hello_image().size() - 4 - 6);
  std::filesystem::copy(image_src, dir / "img", std::filesystem::copy_options::recursive);
  ASSERT_TRUE(run_command({"chown", "-R", user, dir.string()}).ok());
  // Rootless taps need /dev/net/tun open to all (Debian's default); restored after.
  struct stat tun {};
  ASSERT_EQ(::stat("/dev/net/tun", &tun), 0);
  const mode_t tun_mode = tun.st_mode & 07777;
  ::chmod("/dev/net/tun", tun_mode | 0666);
  auto as_user = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"setpriv", "--reuid=" + user, "--regid=" + user, "--clear-groups",
                                     std::string(FCVM_BINARY_DIR) + "/bin/fcvm", "--data-dir", (dir / "data").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv);
  };
  const std::uint16_t port = fcvm::testing::free_tcp_port();
  auto started = as_user({"podman", "run", "-d", "--name", "web", "--network", "network-slirp", "-p",
                          std::to_string(port) + ":80", "--kernel", FcvmCli::kernel().string(),
                          "oci:" + (dir / "img").string() + ":hello", "httpd", "-f", "-p", "80", "-h", "/www"});
  EXPECT_TRUE(started.ok()) << started.status().message();
  if (started.ok()) {
    auto ls = as_user({"ls", "--json", "--name", "web"});
    ASSERT_TRUE(ls.ok());
    const auto rec = nlohmann::json::parse(*ls).at(0);
    const std::string ip = rec["network"]["ports"].at(0)["host_ip"];
    const std::string page = http_get(ip, port, std::chrono::seconds(60));
    EXPECT_NE(page.find("Hello from fcvm!"), std::string::npos) << page;
    EXPECT_TRUE(as_user({"stop", "web"}).ok());
    EXPECT_TRUE(as_user({"gc"}).ok());
  }
  // Nothing of the user's runs on (zombies awaiting init's reaping hold nothing).
  auto left = run_command({"ps", "-u", user, "-o", "stat=,pid=,args="});
  std::istringstream lines(left.ok() ? *left : "");
  for (std::string line; std::getline(lines, line);) EXPECT_EQ(line.rfind("Z", 0), 0u) << "left running: " << line;
  ::chmod("/dev/net/tun", tun_mode);
  (void)run_command({"userdel", user});
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Bridged, CloneNetworkTest, ::testing::Values("network-bridged"),
                         [](const auto&) { return std::string("Bridged"); });
INSTANTIATE_TEST_SUITE_P(Plugins, NetworkVmTest, ::testing::Values("network-bridged", "network-slirp"),
                         [](const auto& p) { return p.param == "network-bridged" ? std::string("Bridged")
                                                                                        : std::string("Slirp"); });

}  // namespace
}  // namespace fcvm::test
