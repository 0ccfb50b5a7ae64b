// Cold start of a container VM: `fcvm podman run` (vmm-qemu + storage-squashfs) against
// the bare cost of booting the same kernel to a trivial init and powering off, measured
// in the same run. Reported per benchmark: wall time, and `vs_bare_boot`, the ratio to
// the baseline. Later snapshot/clone work is compared against these numbers.
//
// Needs root and a guest kernel: FCVM_BENCH_KERNEL (or FCVM_TEST_KERNEL) = vmlinux.
//   build/bench/fcvm_cold_start_bench --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fcvm/child_process.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string kernel() {
  for (const char* var : {"FCVM_BENCH_KERNEL", "FCVM_TEST_KERNEL"}) {
    if (const char* k = std::getenv(var)) return k;
  }
  return {};
}

// A scratch dir for the whole run: data dir, example image, baseline initramfs.
const fs::path& scratch() {
  static const fs::path dir = [] {
    char tmpl[] = "/tmp/fcvm-bench-XXXXXX";
    return fs::path(::mkdtemp(tmpl));
  }();
  return dir;
}

std::vector<std::string> fcvm(std::vector<std::string> args) {
  args.insert(args.begin(), {std::string(FCVM_BINARY_DIR) + "/bin/fcvm", "--data-dir",
                             (scratch() / "data").string()});
  return args;
}

// An initramfs whose /init powers the VM off at once: what booting alone costs.
fs::path bare_initramfs() {
  const auto root = scratch() / "bare-root";
  const auto out = scratch() / "bare.cpio.gz";
  if (fs::exists(out)) return out;
  fs::create_directories(root / "bin");
  fs::copy_file("/bin/busybox", root / "bin/busybox");
  std::ofstream(root / "init") << "#!/bin/busybox sh\n/bin/busybox poweroff -f\n";
  fs::permissions(root / "init", fs::perms::owner_all);
  auto r = fcvm::run_command({"sh", "-c", "cd " + root.string() +
                                              " && find . | cpio -o -H newc --quiet | gzip -1 > " +
                                              out.string()});
  if (!r) throw std::runtime_error(r.status().message());
  return out;
}

std::string hello_image() {
  static const std::string ref = [] {
    const auto layout = scratch() / "hello-oci";
    auto r = fcvm::run_command({std::string(FCVM_SOURCE_DIR) + "/examples/hello/build.sh", layout.string()});
    if (!r) throw std::runtime_error(r.status().message());
    return "oci:" + layout.string() + ":hello";
  }();
  return ref;
}

// Runs argv; returns seconds until its first stdout byte and until it exits.
std::pair<double, double> timed_run(const std::vector<std::string>& argv) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  fcvm::UniqueFd rd(p[0]), wr(p[1]);
  fcvm::SpawnOptions opts;
  opts.argv = argv;
  opts.stdout_fd = wr.get();
  const auto start = Clock::now();
  auto child = fcvm::ChildProcess::spawn(opts);
  if (!child) throw std::runtime_error(child.status().message());
  wr.reset();
  double first = -1;
  char buf[4096];
  while (::read(rd.get(), buf, sizeof buf) > 0) {
    if (first < 0) first = std::chrono::duration<double>(Clock::now() - start).count();
  }
  auto st = child->wait();
  const double total = std::chrono::duration<double>(Clock::now() - start).count();
  if (!st || !st->success()) throw std::runtime_error(argv[0] + " failed");
  return {first, total};
}

// Under TCG the guest cannot calibrate its TSC against microvm's timers on a busy host;
// vmm-qemu passes the host's rate, and so does the baseline (same command line terms).
std::string tsc_args() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("cpu MHz", 0) == 0) {
      const double mhz = std::stod(line.substr(line.find(':') + 1));
      return " tsc_early_khz=" + std::to_string(static_cast<long>(mhz * 1000)) + " tsc=reliable";
    }
  }
  return {};
}

double g_bare_boot = 0;  // seconds, set by the baseline

void BM_BareQemuBoot(benchmark::State& state) {
  if (kernel().empty() || ::geteuid() != 0) {
    state.SkipWithError("needs root and FCVM_BENCH_KERNEL/FCVM_TEST_KERNEL");
    return;
  }
  const auto initrd = bare_initramfs();
  // The accelerator vmm-qemu's "auto" picks: KVM only with hardware KVM.
  const bool kvm = fs::exists("/sys/module/kvm_intel") || fs::exists("/sys/module/kvm_amd");
  std::vector<std::string> argv = {
      "qemu-system-x86_64", "-M", "microvm", "-accel", kvm ? "kvm" : "tcg", "-m", "256", "-nodefaults",
      "-no-user-config", "-nographic", "-no-reboot", "-serial", "null", "-kernel", kernel(),
      "-initrd", initrd.string(), "-append",
      "console=ttyS0 quiet panic=-1 reboot=t" + (kvm ? std::string() : tsc_args())};
  if (kvm) argv.insert(argv.end(), {"-cpu", "host,-arch-capabilities"});
  double sum = 0;
  for (auto _ : state) {
    auto [first, total] = timed_run(argv);
    (void)first;
    state.SetIterationTime(total);
    sum += total;
  }
  g_bare_boot = sum / static_cast<double>(state.iterations());
}
BENCHMARK(BM_BareQemuBoot)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);

// `fcvm podman run --rm IMAGE echo started`: time to the container's first output
// (cold start to container start) and to fcvm's exit (whole life cycle).
void BM_PodmanRunSquashfs(benchmark::State& state) {
  if (kernel().empty() || ::geteuid() != 0) {
    state.SkipWithError("needs root and FCVM_BENCH_KERNEL/FCVM_TEST_KERNEL");
    return;
  }
  const auto argv = fcvm({"podman", "run", "--rm", "--kernel", kernel(), "--storage",
                          "storage-squashfs", hello_image(), "echo", "started"});
  timed_run(argv);  // warm: image pulled, squashfs base built, initramfs built
  double first_sum = 0, total_sum = 0;
  for (auto _ : state) {
    auto [first, total] = timed_run(argv);
    state.SetIterationTime(first);
    first_sum += first;
    total_sum += total;
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["to_start_s"] = first_sum / n;
  state.counters["to_exit_s"] = total_sum / n;
  if (g_bare_boot > 0) state.counters["vs_bare_boot"] = (first_sum / n) / g_bare_boot;
}
BENCHMARK(BM_PodmanRunSquashfs)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  fs::remove_all(scratch(), ec);
  return 0;
}
