// One plugin combination, measured against baselines taken in the same run. The combination
// comes from the environment (scripts/bench sets it for every combination that can run):
//   FCVM_BENCH_VMM, FCVM_BENCH_STORAGE, FCVM_BENCH_NETWORK ("none": no NIC), FCVM_BENCH_MEMORY
//   FCVM_BENCH_REPS: repetitions of each measurement (default 3)
//
// Reported per benchmark: the median as the benchmark's time, the spread (min and max) as
// counters, and the ratio of medians to its baseline:
//   BM_BareBoot           baseline: QEMU boots the guest kernel to an init that powers off
//   BM_ColdStart          `fcvm podman run --rm --no-snapshot IMAGE echo started`, to the
//                         first output (exec-ready: the container's process runs) / BM_BareBoot
//   BM_CachedStart        the same run restoring its startup snapshot (taken by a first run
//                         that is not timed) / BM_ColdStart
//   BM_VmFootprint        one detached VM: PSS of its VMM process, disk bytes it owns
//   BM_LoopbackRequest    baseline: HTTP GET to busybox httpd on the host's loopback
//   BM_FirstRequest       the same GET through a published port of a VM running busybox
//                         httpd: time from `podman run -d` to the first answer, and the
//                         latency of a request afterwards / BM_LoopbackRequest
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "fcvm/child_process.h"

namespace {

namespace fs = std::filesystem;
namespace fb = fcvm::bench;
using Clock = std::chrono::steady_clock;

using fb::env_or;
using fb::plugin_flags;
using fb::reps;

std::vector<std::string> podman_run(std::vector<std::string> tail) {
  std::vector<std::string> args = {"podman", "run", "--kernel", fb::guest_kernel()};
  for (auto& f : plugin_flags()) args.push_back(f);
  args.insert(args.end(), tail.begin(), tail.end());
  return fb::fcvm_argv(args);
}

// Median, min and max of a sample, recorded on the state; the median is the iteration time.
struct Sample {
  std::vector<double> values;
  double median() const {
    auto v = values;
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  void report(benchmark::State& state, const std::string& name) const {
    state.counters[name + "_median"] = median();
    state.counters[name + "_min"] = *std::min_element(values.begin(), values.end());
    state.counters[name + "_max"] = *std::max_element(values.begin(), values.end());
  }
};

double g_bare_boot = 0;     // medians of the baselines, seconds
double g_loopback_get = 0;
double g_cold_start = 0;

bool skip_without_vm(benchmark::State& state) {
  if (const auto why = fb::vm_skip_reason(); !why.empty()) {
    state.SkipWithError(why.c_str());
    return true;
  }
  return false;
}

void BM_BareBoot(benchmark::State& state) {
  if (skip_without_vm(state)) return;
  Sample s;
  for (auto _ : state) {
    for (int i = 0; i < reps(); ++i) s.values.push_back(fb::timed_run(fb::bare_boot_argv()).exit_s);
    state.SetIterationTime(s.median());
  }
  s.report(state, "boot_s");
  g_bare_boot = s.median();
}
BENCHMARK(BM_BareBoot)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

void BM_ColdStart(benchmark::State& state) {
  if (skip_without_vm(state)) return;
  try {
    const auto argv = podman_run({"--rm", "--no-snapshot", fb::hello_image(), "echo", "started"});
    fb::timed_run(argv);  // warm caches: image pulled, base built, initramfs built
    Sample s;
    for (auto _ : state) {
      for (int i = 0; i < reps(); ++i) s.values.push_back(fb::timed_run(argv).first_output_s);
      state.SetIterationTime(s.median());
    }
    s.report(state, "exec_ready_s");
    if (g_bare_boot > 0) state.counters["vs_bare_boot"] = s.median() / g_bare_boot;
    g_cold_start = s.median();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}
BENCHMARK(BM_ColdStart)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

void BM_CachedStart(benchmark::State& state) {
  if (skip_without_vm(state)) return;
  try {
    const auto argv = podman_run({"--rm", fb::hello_image(), "echo", "cached"});
    fb::timed_run(argv);  // boots and takes the startup snapshot
    Sample s;
    for (auto _ : state) {
      for (int i = 0; i < reps(); ++i) s.values.push_back(fb::timed_run(argv).first_output_s);
      state.SetIterationTime(s.median());
    }
    s.report(state, "exec_ready_s");
    if (g_cold_start > 0) state.counters["vs_cold_start"] = s.median() / g_cold_start;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}
BENCHMARK(BM_CachedStart)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

nlohmann::json inspect(const std::string& name) {
  auto out = fcvm::run_command(fb::fcvm_argv({"inspect", name}));
  if (!out) throw std::runtime_error(out.status().message());
  return nlohmann::json::parse(*out);
}

// Stops a detached VM however its benchmark ends.
struct DetachedVm {
  std::string name;
  ~DetachedVm() {
    (void)fcvm::run_command(fb::fcvm_argv({"stop", name}));
    (void)fcvm::run_command(fb::fcvm_argv({"gc"}));
  }
};

pid_t vmm_pid_of(pid_t fcvm_pid) {
  for (pid_t child : fb::children_of(fcvm_pid)) return child;  // the VMM is its only child
  throw std::runtime_error("the VM's fcvm process has no VMM child");
}

void BM_VmFootprint(benchmark::State& state) {
  if (skip_without_vm(state)) return;
  try {
    for (auto _ : state) {
      DetachedVm vm{"bench-footprint-" + std::to_string(::getpid())};
      fb::timed_run(podman_run({"-d", "--rm", "--no-snapshot", "--name", vm.name, fb::hello_image(), "sleep", "600"}));
      const auto record = inspect(vm.name);
      const auto pss = fb::pss_of(vmm_pid_of(record.at("pid").get<pid_t>()));
      state.counters["pss_mib"] = static_cast<double>(pss.total()) / (1 << 20);
      state.counters["pss_anon_mib"] = static_cast<double>(pss.anon) / (1 << 20);
      state.counters["pss_file_mib"] = static_cast<double>(pss.file) / (1 << 20);
      state.counters["pss_shmem_mib"] = static_cast<double>(pss.shmem) / (1 << 20);
      state.counters["disk_mib"] =
          static_cast<double>(fb::allocated_bytes(record.at("vm_dir").get<std::string>())) / (1 << 20);
      state.SetIterationTime(1);
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}
BENCHMARK(BM_VmFootprint)->UseManualTime()->Iterations(1);

// One HTTP/1.0 GET of "/" to 127.0.0.1:port; true on a 200 answer.
bool http_get(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  fcvm::UniqueFd sock(fd);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
  const std::string req = "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) return false;
  std::string reply;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) reply.append(buf, static_cast<size_t>(n));
  return reply.rfind("HTTP/1.0 200", 0) == 0 || reply.rfind("HTTP/1.1 200", 0) == 0;
}

double timed_get(std::uint16_t port) {
  const auto start = Clock::now();
  if (!http_get(port)) throw std::runtime_error("GET 127.0.0.1:" + std::to_string(port) + " failed");
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::uint16_t bench_port(int offset) {
  return static_cast<std::uint16_t>(20000 + (::getpid() % 20000) + offset);
}

void BM_LoopbackRequest(benchmark::State& state) {
  const auto www = fb::scratch_dir() / "www";
  fs::create_directories(www);
  std::ofstream(www / "index.html") << "hello\n";
  const auto port = bench_port(0);
  fcvm::SpawnOptions opts;
  opts.argv = {"busybox", "httpd", "-f", "-p", "127.0.0.1:" + std::to_string(port), "-h", www.string()};
  auto server = fcvm::ChildProcess::spawn(opts);
  if (!server) {
    state.SkipWithError(server.status().message().c_str());
    return;
  }
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!http_get(port) && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  Sample s;
  for (auto _ : state) {
    for (int i = 0; i < reps() * 5; ++i) s.values.push_back(timed_get(port));
    state.SetIterationTime(s.median());
  }
  s.report(state, "get_s");
  g_loopback_get = s.median();
}
BENCHMARK(BM_LoopbackRequest)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(1);

void BM_FirstRequest(benchmark::State& state) {
  if (skip_without_vm(state)) return;
  if (env_or("FCVM_BENCH_NETWORK", "none") == "none") {
    state.SkipWithError("no network plugin in this combination");
    return;
  }
  try {
    Sample ready, latency;
    for (auto _ : state) {
      for (int i = 0; i < reps(); ++i) {
        const auto port = bench_port(1 + i);
        DetachedVm vm{"bench-http-" + std::to_string(::getpid()) + "-" + std::to_string(i)};
        const auto start = Clock::now();
        fb::timed_run(podman_run({"-d", "--rm", "--no-snapshot", "--name", vm.name, "-p",
                                  "127.0.0.1:" + std::to_string(port) + ":80", fb::hello_image(),
                                  "httpd", "-f", "-p", "80", "-h", "/www"}));
        const auto deadline = start + std::chrono::seconds(120);
        while (!http_get(port)) {
          if (Clock::now() > deadline) throw std::runtime_error("the VM's httpd did not answer in 120 s");
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        ready.values.push_back(std::chrono::duration<double>(Clock::now() - start).count());
        latency.values.push_back(timed_get(port));
      }
      state.SetIterationTime(ready.median());
    }
    ready.report(state, "first_answer_s");
    latency.report(state, "get_s");
    if (g_loopback_get > 0) state.counters["get_vs_loopback"] = latency.median() / g_loopback_get;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}
BENCHMARK(BM_FirstRequest)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  fb::remove_scratch_dir();
  return 0;
}
