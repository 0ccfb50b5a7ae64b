// Networking: set-up + teardown time per network plugin, and TCP throughput host -> guest
// and guest -> host through each plugin's data path, next to the same transfer over the
// host's loopback (the baseline, measured in the same run; `vs_loopback` is the ratio).
//
// No VM: a stand-in guest (a forked process inside the VM's namespaces, at the guest's
// address, behind the very devices and NAT the VM would use) is the far end. Under TCG a
// real guest's virtio-net would dominate and say nothing about the plugins.
// Needs root. build/bench/fcvm_network_bench --benchmark_repetitions=3
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <random>

#include "bridged_network.h"
#include "fcvm/route_netlink.h"
#include "fcvm/tap_device.h"
#include "fcvm/veth.h"
#include "net_test_support.h"
#include "slirp_network.h"

namespace {

using namespace fcvm;
constexpr std::size_t kTransfer = 64 << 20;
constexpr std::uint16_t kGuestPort = 5001;

const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    char tmpl[] = "/tmp/fcvm-netbench-XXXXXX";
    return std::filesystem::path(::mkdtemp(tmpl));
  }();
  return dir;
}

std::unique_ptr<NetworkBackend> backend(const std::string& plugin) {
  if (plugin == "bridged") {
    auto opts = bridged::Options::from_json(
        {{"pool", "100.83." + std::to_string(::getpid() & 0xff) + ".0/24"}, {"ip_forward", false}});
    return std::make_unique<bridged::BridgedNetwork>(scratch() / plugin, *opts, null_logger());
  }
  return std::make_unique<slirp::SlirpNetwork>(scratch() / plugin, *slirp::Options::from_json({}), null_logger());
}

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

// Serves on ip:port: each connection sends 'S' (then we drain kTransfer bytes and ack one
// byte) or 'P' (then we push kTransfer bytes).
[[noreturn]] void serve(int listener) {
  std::vector<char> buf(1 << 20, 'x');
  for (;;) {
    int c = ::accept(listener, nullptr, nullptr);
    if (c < 0) ::_exit(0);
    char cmd = 0;
    if (::read(c, &cmd, 1) == 1) {
      if (cmd == 'S') {
        std::size_t got = 0;
        for (ssize_t n; got < kTransfer && (n = ::read(c, buf.data(), buf.size())) > 0;) got += static_cast<std::size_t>(n);
        write_all(c, "k", 1);
      } else {
        for (std::size_t sent = 0; sent < kTransfer; sent += buf.size()) write_all(c, buf.data(), buf.size());
      }
    }
    ::close(c);
  }
}

// A forked far end in `namespaces` (joined in order), listening on ip:port. `prepare` runs
// inside first (addresses). Returns its pid once it listens.
pid_t start_far_end(const std::vector<std::filesystem::path>& namespaces, const std::string& ip, std::uint16_t port,
                    const std::function<Status()>& prepare) {
  int p[2];
  if (::pipe(p) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    for (const auto& ns : namespaces) {
      int fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, 0) != 0) ::_exit(1);
    }
    if (prepare && !prepare().ok()) ::_exit(1);
    int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa = fcvm::testing::ipv4_sockaddr(ip, port);
    if (::bind(l, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(l, 4) != 0) ::_exit(1);
    write_all(p[1], "L", 1);
    ::close(p[1]);
    serve(l);
  }
  ::close(p[1]);
  char c = 0;
  const bool ok = ::read(p[0], &c, 1) == 1;
  ::close(p[0]);
  if (!ok) {
    ::waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

// One transfer of kTransfer bytes; returns seconds.
double transfer(const std::string& ip, std::uint16_t port, bool to_guest) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa = fcvm::testing::ipv4_sockaddr(ip, port);
  const auto start = std::chrono::steady_clock::now();
  if (::connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(s);
    return -1;
  }
  std::vector<char> buf(1 << 20, 'y');
  write_all(s, to_guest ? "S" : "P", 1);
  std::size_t got = 0;
  if (to_guest) {
    for (std::size_t sent = 0; sent < kTransfer; sent += buf.size()) write_all(s, buf.data(), buf.size());
    char ack;
    if (::read(s, &ack, 1) != 1) got = 0;
    else got = kTransfer;
  } else {
    for (ssize_t n; (n = ::read(s, buf.data(), buf.size())) > 0;) got += static_cast<std::size_t>(n);
  }
  ::close(s);
  if (got != kTransfer) return -1;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The path a benchmark measures: where to connect, and what to undo.
struct Path {
  std::string ip;
  std::uint16_t port = 0;
  pid_t far_end = -1;
  std::unique_ptr<NetworkBackend> net;
  std::optional<NetworkLease> lease;
  std::optional<Netns> guest_ns;
  ~Path() {
    if (far_end > 0) {
      ::kill(far_end, SIGKILL);
      ::waitpid(far_end, nullptr, 0);
    }
    if (lease) (void)net->teardown(*lease);
  }
};

std::unique_ptr<Path> make_path(const std::string& kind, std::string& why) {
  auto path = std::make_unique<Path>();
  if (kind == "loopback") {
    path->ip = "127.0.0.1";
    path->port = fcvm::testing::free_tcp_port();
    path->far_end = start_far_end({}, path->ip, path->port, {});
    return path;
  }
  path->net = backend(kind);
  path->port = fcvm::testing::free_tcp_port();
  auto lease = path->net->setup({fcvm::testing::random_vm_id(), "bench", {{"tcp", "0.0.0.0", path->port, kGuestPort}}});
  if (!lease) {
    why = lease.status().message();
    return nullptr;
  }
  path->lease = *lease;
  path->ip = lease->ports.at(0).host_ip == "0.0.0.0" ? "127.0.0.1" : lease->ports.at(0).host_ip;
  if (kind == "bridged") {
    // The VM's tap becomes a veth whose far end is the stand-in guest's eth0.
    auto vm_ns = Netns::open_named(lease->extra["netns"].get<std::string>());
    auto guest = Netns::create_anonymous();
    if (!vm_ns || !guest) return nullptr;
    (void)TapDevice::remove(*vm_ns, lease->tap);
    Status wired = vm_ns->run_in([&] {
      auto veth = Veth::create(lease->tap, "eth0", *guest);
      if (!veth) return veth.status();
      veth->release();
      auto rt = RouteNetlink::open();
      FCVM_RETURN_IF_ERROR(rt->add_address(lease->tap, lease->guest.gateway + "/24"));
      return rt->link_up(lease->tap);
    });
    if (!wired.ok()) {
      why = wired.message();
      return nullptr;
    }
    path->guest_ns.emplace(std::move(*guest));
    path->far_end = start_far_end({path->guest_ns->join_path()}, "10.0.2.15", kGuestPort, [&] {
      auto rt = RouteNetlink::open();
      FCVM_RETURN_IF_ERROR(rt->link_up("lo"));
      FCVM_RETURN_IF_ERROR(rt->add_address("eth0", lease->guest.address));
      FCVM_RETURN_IF_ERROR(rt->link_up("eth0"));
      return rt->add_default_route("eth0", lease->guest.gateway);
    });
  } else {
    // slirp: the guest's address on the namespace's bridge, where the guest's NIC would be.
    path->far_end = start_far_end(lease->namespaces, "10.0.2.15", kGuestPort, [] {
      auto rt = RouteNetlink::open();
      FCVM_RETURN_IF_ERROR(rt->add_address("br0", "10.0.2.15/24"));
      return rt->add_default_route("br0", "10.0.2.2");
    });
  }
  if (path->far_end < 0) why = "the stand-in guest did not start";
  return path->far_end < 0 ? nullptr : std::move(path);
}

std::map<std::string, double> baseline_seconds;  // per direction, from the loopback runs

void BM_Throughput(benchmark::State& state, const std::string& kind, bool to_guest) {
  if (::geteuid() != 0) return state.SkipWithError("needs root");
  std::string why;
  auto path = make_path(kind, why);
  if (!path) return state.SkipWithError(("cannot set up " + kind + ": " + why).c_str());
  double total = 0;
  std::int64_t runs = 0;
  for (auto _ : state) {
    const double s = transfer(path->ip, path->port, to_guest);
    if (s < 0) return state.SkipWithError("transfer failed");
    state.SetIterationTime(s);
    total += s;
    ++runs;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(kTransfer) * runs);
  const std::string dir = to_guest ? "to_guest" : "from_guest";
  const double mean = total / static_cast<double>(runs);
  if (kind == "loopback") baseline_seconds[dir] = mean;
  if (baseline_seconds.count(dir)) state.counters["vs_loopback"] = mean / baseline_seconds[dir];
}

void BM_SetupTeardown(benchmark::State& state, const std::string& kind) {
  if (::geteuid() != 0) return state.SkipWithError("needs root");
  auto net = backend(kind);
  for (auto _ : state) {
    auto lease = net->setup({fcvm::testing::random_vm_id(), "bench", {{"tcp", "0.0.0.0", fcvm::testing::free_tcp_port(), 80}}});
    if (!lease) return state.SkipWithError(lease.status().message().c_str());
    if (Status st = net->teardown(*lease); !st.ok()) return state.SkipWithError(st.message().c_str());
  }
}

// Loopback first: the ratios need the baseline of the same run.
BENCHMARK_CAPTURE(BM_Throughput, loopback_to_guest, std::string("loopback"), true)->UseManualTime()->Iterations(5);
BENCHMARK_CAPTURE(BM_Throughput, loopback_from_guest, std::string("loopback"), false)->UseManualTime()->Iterations(5);
BENCHMARK_CAPTURE(BM_Throughput, bridged_to_guest, std::string("bridged"), true)->UseManualTime()->Iterations(5);
BENCHMARK_CAPTURE(BM_Throughput, bridged_from_guest, std::string("bridged"), false)->UseManualTime()->Iterations(5);
BENCHMARK_CAPTURE(BM_Throughput, slirp_to_guest, std::string("slirp"), true)->UseManualTime()->Iterations(5);
BENCHMARK_CAPTURE(BM_Throughput, slirp_from_guest, std::string("slirp"), false)->UseManualTime()->Iterations(5);
BENCHMARK_CAPTURE(BM_SetupTeardown, bridged, std::string("bridged"))->Unit(benchmark::kMillisecond)->Iterations(10);
BENCHMARK_CAPTURE(BM_SetupTeardown, slirp, std::string("slirp"))->Unit(benchmark::kMillisecond)->Iterations(10);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  std::filesystem::remove_all(scratch(), ec);
  return 0;
}
