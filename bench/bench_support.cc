#include "bench_support.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <limits>
#include <stdexcept>

#include "fcvm/child_process.h"

namespace fcvm::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Under TCG the guest cannot calibrate its TSC against microvm's timers on a busy host;
// vmm-qemu passes the host's rate, and so does the baseline.
std::string tsc_cmdline_args() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("cpu MHz", 0) == 0) {
      const double mhz = std::stod(line.substr(line.find(':') + 1));
      return " tsc_early_khz=" + std::to_string(static_cast<long>(mhz * 1000)) + " tsc=reliable";
    }
  }
  return {};
}

void check(const Result<std::string>& r) {
  if (!r) throw std::runtime_error(r.status().message());
}

// An initramfs whose /init powers the VM off at once.
fs::path bare_initramfs() {
  const auto root = scratch_dir() / "bare-root";
  const auto out = scratch_dir() / "bare.cpio.gz";
  if (fs::exists(out)) return out;
  fs::create_directories(root / "bin");
  fs::copy_file("/bin/busybox", root / "bin/busybox", fs::copy_options::overwrite_existing);
  std::ofstream(root / "init") << "#!/bin/busybox sh\n/bin/busybox poweroff -f\n";
  fs::permissions(root / "init", fs::perms::owner_all);
  check(run_command({"sh", "-c", "cd " + root.string() +
                                     " && find . | cpio -o -H newc --quiet | gzip -1 > " +
                                     out.string()}));
  return out;
}

}  // namespace

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

int reps() { return std::max(1, std::atoi(env_or("FCVM_BENCH_REPS", "3").c_str())); }

std::vector<std::string> plugin_flags() {
  std::vector<std::string> flags = {"--vmm", env_or("FCVM_BENCH_VMM", "vmm-qemu"), "--storage",
                                    env_or("FCVM_BENCH_STORAGE", "storage-squashfs")};
  if (const auto net = env_or("FCVM_BENCH_NETWORK", "none"); net != "none") {
    flags.insert(flags.end(), {"--network", net});
  }
  return flags;
}

std::string guest_kernel() {
  for (const char* var : {"FCVM_BENCH_KERNEL", "FCVM_TEST_KERNEL"}) {
    if (const char* k = std::getenv(var); k && *k) return k;
  }
  return {};
}

std::string vm_skip_reason() {
  if (::geteuid() != 0) return "needs root (VMs with storage and network plugins)";
  if (guest_kernel().empty()) return "no guest kernel: set FCVM_BENCH_KERNEL (scripts/bench does)";
  return {};
}

const fs::path& scratch_dir() {
  static const fs::path dir = [] {
    char tmpl[] = "/tmp/fcvm-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp /tmp: " + std::string(strerror(errno)));
    return fs::path(tmpl);
  }();
  return dir;
}

namespace {

std::string fcvm_binary() { return std::string(FCVM_BINARY_DIR) + "/bin/fcvm"; }

// The run's data dir. storage-btrfs needs it on btrfs: `fcvm setup storage` makes a
// loop-mounted volume in it once, which remove_scratch_dir() unmounts.
const fs::path& data_dir() {
  static const fs::path dir = [] {
    const fs::path d = scratch_dir() / "data";
    fs::create_directories(d);
    if (env_or("FCVM_BENCH_STORAGE", "") == "storage-btrfs") {
      check(run_command({fcvm_binary(), "--data-dir", d.string(), "setup", "storage"}));
    }
    return d;
  }();
  return dir;
}

bool is_mount_point(const fs::path& path) {
  struct stat self{}, parent{};
  return ::stat(path.c_str(), &self) == 0 && ::stat(path.parent_path().c_str(), &parent) == 0 &&
         self.st_dev != parent.st_dev;
}

}  // namespace

void remove_scratch_dir() {
  // The btrfs volume's loop device is autoclear: it goes with the unmount.
  const fs::path volume = scratch_dir() / "data" / "btrfs";
  if (is_mount_point(volume) && ::umount2(volume.c_str(), 0) != 0) ::umount2(volume.c_str(), MNT_DETACH);
  std::error_code ec;
  fs::remove_all(scratch_dir(), ec);
}

// The run's config: network-bridged leaves the host's ip_forward alone, since the
// benchmarks reach their guests from this host only.
const fs::path& config_file() {
  static const fs::path file = [] {
    const fs::path f = scratch_dir() / "config.json";
    std::ofstream(f) << R"({"plugin_config": {"network-bridged": {"ip_forward": false}}})" << "\n";
    return f;
  }();
  return file;
}

std::vector<std::string> fcvm_argv(std::vector<std::string> args) {
  args.insert(args.begin(), {fcvm_binary(), "--config", config_file().string(), "--data-dir", data_dir().string()});
  return args;
}

std::string hello_image() {
  static const std::string ref = [] {
    const auto layout = scratch_dir() / "hello-oci";
    check(run_command({std::string(FCVM_SOURCE_DIR) + "/examples/hello/build.sh", layout.string()}));
    return "oci:" + layout.string() + ":hello";
  }();
  return ref;
}

bool hardware_kvm() {
  return fs::exists("/sys/module/kvm_intel") || fs::exists("/sys/module/kvm_amd");
}

std::vector<std::string> bare_boot_argv() {
  const bool kvm = hardware_kvm();
  std::vector<std::string> argv = {
      "qemu-system-x86_64", "-M", "microvm", "-accel", kvm ? "kvm" : "tcg", "-m", "256",
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "null",
      "-kernel", guest_kernel(), "-initrd", bare_initramfs().string(), "-append",
      "console=ttyS0 quiet panic=-1 reboot=t" + (kvm ? std::string() : tsc_cmdline_args())};
  if (kvm) argv.insert(argv.end(), {"-cpu", "host,-arch-capabilities"});
  return argv;
}

TimedRun timed_run(const std::vector<std::string>& argv) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  UniqueFd rd(p[0]), wr(p[1]);
  SpawnOptions opts;
  opts.argv = argv;
  opts.stdout_fd = wr.get();
  const auto start = Clock::now();
  auto child = ChildProcess::spawn(opts);
  if (!child) throw std::runtime_error(child.status().message());
  wr.reset();
  TimedRun run;
  char buf[4096];
  for (ssize_t n; (n = ::read(rd.get(), buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (run.first_output_s < 0) run.first_output_s = std::chrono::duration<double>(Clock::now() - start).count();
    run.output.append(buf, static_cast<size_t>(n));
  }
  auto st = child->wait();
  run.exit_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (!st || !st->success()) {
    throw std::runtime_error(argv[0] + " " + (argv.size() > 3 ? argv[3] : "") + " failed: " +
                             (st ? st->describe() : "did not exit"));
  }
  return run;
}

Pss pss_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  if (!in) throw std::runtime_error("no /proc/" + std::to_string(pid) + "/smaps_rollup");
  Pss pss;
  for (std::string key; in >> key;) {
    std::uint64_t kib = 0;
    std::string unit;
    if (key == "Pss_Anon:" || key == "Pss_File:" || key == "Pss_Shmem:") {
      in >> kib >> unit;
      (key == "Pss_Anon:" ? pss.anon : key == "Pss_File:" ? pss.file : pss.shmem) = kib * 1024;
    } else {
      in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
  }
  return pss;
}

std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "children");
    for (pid_t child; in >> child;) out.push_back(child);
  }
  return out;
}

std::uint64_t allocated_bytes(const fs::path& dir, bool owned_only) {
  std::uint64_t total = 0;
  std::set<std::pair<dev_t, ino_t>> seen;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    struct stat st{};
    if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (owned_only && st.st_nlink > 1) continue;
    if (!seen.insert({st.st_dev, st.st_ino}).second) continue;
    total += static_cast<std::uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

}  // namespace fcvm::bench
