// Per-fault cost of the memory-uffd page server against a minimal single-client handler
// (poll the uffd, read one message, UFFDIO_COPY one page: FACTS.md's baseline), measured
// in the same run, interleaved pass by pass so host noise hits both alike.
//
// Each pass: a fresh Firecracker-style client (anonymous MAP_PRIVATE memory registered
// MISSING with a fresh uffd) reads one byte of every page of a 16 MiB image, in order
// (sequential) or shuffled (random). Reported per benchmark:
//   us_per_page_server, us_per_page_baseline   wall time per page touched
//   vs_baseline                                server / baseline (goal for 4 KiB chunks:
//                                              at most 1.1)
//   faults_per_pass                            server faults (chunks fill several pages)
// Args: chunk bytes (4096: one page per fault, as the baseline), access order.
//   build/bench/fcvm_uffd_fault_bench
#include <benchmark/benchmark.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "fcvm/atomic_file.h"
#include "firecracker_client.h"
#include "mapped_image.h"
#include "uffd_page_server.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using fcvm::uffd::testing::ClientLayout;
using fcvm::uffd::testing::FirecrackerClient;

constexpr std::uint64_t kImageBytes = 16 << 20;
const std::uint64_t kPage = std::uint64_t(::sysconf(_SC_PAGESIZE));

const fs::path& scratch() {
  static const fs::path dir = [] {
    char tmpl[] = "/tmp/fcvm-uffd-bench-XXXXXX";
    fs::path d(::mkdtemp(tmpl));
    std::string image(kImageBytes, '\0');
    std::mt19937_64 rng(7);
    for (std::size_t i = 0; i < image.size(); i += 8) {
      const auto v = rng();
      std::memcpy(image.data() + i, &v, 8);
    }
    (void)fcvm::write_file_atomic(d / "memory", image, 0600);
    return d;
  }();
  return dir;
}

std::vector<std::uint64_t> page_order(bool shuffled) {
  std::vector<std::uint64_t> order(kImageBytes / kPage);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i * kPage;
  if (shuffled) std::shuffle(order.begin() + 1, order.end(), std::mt19937(3));
  return order;
}

// Touches every page but the first (already touched: it waited for the handshake).
double touch_seconds(const FirecrackerClient& c, const std::vector<std::uint64_t>& order) {
  volatile std::uint8_t sink = 0;
  const auto t0 = Clock::now();
  for (std::size_t i = 1; i < order.size(); ++i) sink = sink + c.memory()[order[i]];
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The baseline handler: one client, poll, read one message, copy one page.
double baseline_pass(const fcvm::uffd::MappedImage& image, const std::vector<std::uint64_t>& order) {
  auto client = FirecrackerClient::create(ClientLayout{kImageBytes, 0, 1, false});
  if (!client) return -1;
  std::atomic<bool> stop{false};
  std::thread handler([&] {
    const int uffd = client->uffd();
    const auto base = reinterpret_cast<std::uint64_t>(client->memory());
    while (!stop) {
      pollfd p{uffd, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      uffd_msg msg;
      if (::read(uffd, &msg, sizeof msg) != sizeof msg || msg.event != UFFD_EVENT_PAGEFAULT) continue;
      const std::uint64_t off = (msg.arg.pagefault.address - base) & ~(kPage - 1);
      uffdio_copy copy{base + off, reinterpret_cast<std::uint64_t>(image.data() + off), kPage, 0, 0};
      ::ioctl(uffd, UFFDIO_COPY, &copy);
    }
  });
  volatile std::uint8_t first = client->memory()[order[0]];
  (void)first;
  const double s = touch_seconds(*client, order);
  stop = true;
  handler.join();
  return s;
}

// The page server, in a thread of its own, serving this process as its one client.
double server_pass(std::size_t chunk, const std::vector<std::uint64_t>& order, std::uint64_t& faults) {
  fcvm::MemoryServeOptions o;
  o.memory_image = scratch() / "memory";
  o.socket = scratch() / "mem.sock";
  o.state_dir = scratch() / "state";
  o.prefetch = false;
  o.fault_chunk_bytes = chunk;
  o.kill_clients_on_exit = false;  // the client is this very process
  auto server = fcvm::uffd::UffdPageServer::start(o, nullptr);
  auto client = FirecrackerClient::create(ClientLayout{kImageBytes, 0, 1, false});
  if (!server || !client) return -1;
  (*server)->expect_client(::getpid());
  std::atomic<bool> stop{false};
  std::thread loop([&] {
    while (!stop) {
      pollfd p{(*server)->fd(), POLLIN, 0};
      if (::poll(&p, 1, 10) > 0) (void)(*server)->dispatch();
    }
  });
  if (!client->connect_and_send(o.socket).ok()) return -1;
  volatile std::uint8_t first = client->memory()[order[0]];
  (void)first;
  const double s = touch_seconds(*client, order);
  stop = true;
  loop.join();
  faults = (*server)->stats().at(0).faults;
  return s;
}

void BM_PageServerVsMinimalHandler(benchmark::State& state) {
  const auto chunk = std::size_t(state.range(0));
  const auto order = page_order(state.range(1) != 0);
  auto image = fcvm::uffd::MappedImage::open(scratch() / "memory");
  if (::geteuid() != 0 && ::access("/dev/userfaultfd", R_OK | W_OK) != 0) {
    state.SkipWithError("needs root or /dev/userfaultfd");
    return;
  }
  double server = 0, baseline = 0;
  std::uint64_t faults = 0;
  for (auto _ : state) {
    const double b = baseline_pass(*image, order);
    const double s = server_pass(chunk, order, faults);
    if (b < 0 || s < 0) {
      state.SkipWithError("could not set up a userfaultfd client");
      return;
    }
    baseline += b;
    server += s;
    state.SetIterationTime(s);
  }
  const double pages = double(order.size() - 1) * double(state.iterations());
  state.counters["us_per_page_server"] = server / pages * 1e6;
  state.counters["us_per_page_baseline"] = baseline / pages * 1e6;
  state.counters["vs_baseline"] = server / baseline;
  state.counters["faults_per_pass"] = double(faults);
}

BENCHMARK(BM_PageServerVsMinimalHandler)
    ->ArgNames({"chunk", "random"})
    ->ArgsProduct({{4096, 65536, 2 << 20}, {0, 1}})
    ->UseManualTime()
    ->Iterations(16)
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  fs::remove_all(scratch(), ec);
  return 0;
}
