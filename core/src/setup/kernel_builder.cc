#include "setup/kernel_builder.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <system_error>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm/probe_cache.h"
#include "fcvm/program_path.h"
#include "fcvm/unique_fd.h"
#include "fcvm_guest_kernel_config.h"
#include "fcvm/file_lock.h"
#include "fcvm/temp_dir.h"
#include "setup/kernel_build_step.h"
#include "setup/kernel_fragment.h"
#include "setup/shared_asset.h"

namespace fcvm {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------
// Build machinery
// ---------------------------------------------------------------------------------------

namespace {

constexpr const char* kCacheFiles[] = {"vmlinux", "bzImage", "config", "source-version"};
constexpr std::uint64_t kNeededDiskBytes = 5ull << 29;  // 2.5 GiB: source + objects ~1.6 GiB
constexpr auto kPipeReportInterval = std::chrono::seconds(15);

std::string format_duration(Clock::duration d) {
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(secs / 60),
                static_cast<long long>(secs % 60));
  return buf;
}

bool is_regular(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool is_complete(const fs::path& dir) {
  return std::all_of(std::begin(kCacheFiles), std::end(kCacheFiles),
                     [&](const char* name) { return is_regular(dir / name); });
}

std::optional<std::string> read_trimmed(const fs::path& p) {
  auto text = read_file(p);
  if (!text) return std::nullopt;
  std::string s = std::move(text).value();
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

KernelPaths paths_in(const fs::path& dir, std::string key, std::string version) {
  return KernelPaths{dir,           dir / "vmlinux", dir / "bzImage", dir / "config",
                     std::move(key), std::move(version)};
}

unsigned usable_cpus() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<unsigned>(n);
  }
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1;
}

// Copies a file and fsyncs the copy, so the rename that publishes it publishes its data.
Status copy_synced(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return error(Errc::io, "copy " + from.string() + " to " + to.string() + ": " + ec.message());
  UniqueFd fd(::open(to.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0) return errno_status("fsync " + to.string());
  return ok_status();
}

// The progress display for the long `make` step.
class Progress {
 public:
  Progress(int fd, const std::string& what)
      : fd_(fd), tty_(fd >= 0 && ::isatty(fd) == 1), what_(what), start_(Clock::now()),
        last_report_(start_) {}

  void compile_step() {
    ++steps_;
    report(false);
  }
  void tick() { report(false); }

  // Clears the TTY line, so the caller's next message starts on a clean line.
  void finish() {
    if (tty_ && drawn_) emit("\r\x1b[K");
  }

  Clock::duration elapsed() const { return Clock::now() - start_; }

 private:
  void report(bool force) {
    if (fd_ < 0) return;
    const auto now = Clock::now();
    const unsigned pct = kernel_build::progress_percent(steps_);
    if (tty_) {
      // Redraw when the figure changes, and at least every second for the clock.
      if (!force && pct == last_pct_ && now - last_report_ < std::chrono::seconds(1)) return;
      emit("\r\x1b[K" + what_ + ": " + std::to_string(pct) + "% (" +
           format_duration(now - start_) + ")");
      drawn_ = true;
    } else {
      if (!force && now - last_report_ < kPipeReportInterval) return;
      emit(what_ + ": " + std::to_string(pct) + "% after " + format_duration(now - start_) + "\n");
    }
    last_pct_ = pct;
    last_report_ = now;
  }

  void emit(const std::string& text) {
    (void)write_all(fd_, text.data(), text.size());  // progress is best effort
  }

  int fd_;
  bool tty_;
  std::string what_;
  Clock::time_point start_;
  Clock::time_point last_report_;
  unsigned steps_ = 0;
  unsigned last_pct_ = ~0u;
  bool drawn_ = false;
};

// Removes a finished build's tree (~1.6 GiB, tens of thousands of files: minutes on a
// loaded disk mounted with `discard`) without making the caller wait: renames it to `trash`
// and leaves the deletion to a background `rm` that the intermediate shell hands to init
// (so no zombie is left in a long-lived caller). Falls back to deleting it here.
void discard_build_tree(TempDir& tree, const fs::path& trash) {
  if (::rename(tree.path().c_str(), trash.c_str()) != 0) {
    tree.remove();
    return;
  }
  auto started = run_command(
      {"sh", "-c", "rm -rf --one-file-system -- \"$0\" </dev/null >/dev/null 2>&1 &",
       trash.string()});
  if (!started) {
    std::error_code ignored;
    fs::remove_all(trash, ignored);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// KernelBuilder
// ---------------------------------------------------------------------------------------

KernelBuilder::KernelBuilder(KernelBuildOptions options, LoggerPtr log)
    : options_(std::move(options)), log_(log ? std::move(log) : null_logger()) {
  if (options_.fragment.empty()) options_.fragment = std::string(kGuestKernelConfigFragment);
}

Result<std::string> KernelBuilder::source_version() const {
  if (!options_.source_version.empty()) return options_.source_version;
  const std::string fix = std::string("install it: ") + std::string(kKernelBuildDepsFix);
  // Every run asks this (the cache key): dpkg's status file changes whenever a package does.
  auto out = cached_command_output(kernels_dir() / ".probes",
                                   {"dpkg-query", "-W", "-f", "${db:Status-Status}\t${Version}", options_.source_package},
                                   {"/var/lib/dpkg/status"});
  if (!out) {
    return error(Errc::unavailable,
                 "the guest kernel is built from Debian's " + options_.source_package +
                     " package, which is not installed (" + out.status().message() + "); " + fix);
  }
  const std::string& text = out.value();
  const auto tab = text.find('\t');
  if (tab == std::string::npos || text.substr(0, tab) != "installed" || tab + 1 >= text.size()) {
    return error(Errc::unavailable, options_.source_package + " is not installed (dpkg state \"" +
                                        text.substr(0, tab) + "\"); " + fix);
  }
  std::string version = text.substr(tab + 1);
  while (!version.empty() && std::isspace(static_cast<unsigned char>(version.back()))) {
    version.pop_back();
  }
  return version;
}

Result<std::string> KernelBuilder::cache_key() const {
  auto version = source_version();
  if (!version) return version.status();
  return kernel_build::cache_key(*version, options_.fragment);
}

std::optional<KernelPaths> KernelBuilder::cached() const {
  const fs::path kernels = kernels_dir();
  if (auto version = source_version()) {
    const std::string key = kernel_build::cache_key(*version, options_.fragment);
    if (is_complete(kernels / key)) return paths_in(kernels / key, key, *version);
  }
  // Not built from the installed source (or none is installed): the newest kernel built
  // from this fragment, whatever source version it came from.
  std::optional<KernelPaths> best;
  fs::file_time_type best_time;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kernels, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(".") || !is_complete(entry.path())) continue;
    const auto version = read_trimmed(entry.path() / "source-version");
    if (!version || kernel_build::cache_key(*version, options_.fragment) != name) continue;
    std::error_code tec;
    const auto when = fs::last_write_time(entry.path() / "vmlinux", tec);
    if (tec) continue;
    if (!best || when > best_time) {
      best = paths_in(entry.path(), name, *version);
      best_time = when;
    }
  }
  return best;
}

Status KernelBuilder::preflight() const {
  const std::string fix = std::string(kKernelBuildDepsFix);
  utsname uts{};
  if (::uname(&uts) == 0 && std::string_view(uts.machine) != "x86_64") {
    return error(Errc::unavailable, std::string("the guest kernel can only be built on x86_64; this host is ") +
                                        uts.machine + " (pass your own kernel with --kernel)");
  }
  if (!is_regular(options_.source_tarball)) {
    return error(Errc::unavailable, options_.source_tarball.string() + " not found (" +
                                        options_.source_package + " is incomplete); reinstall: " + fix);
  }
  std::vector<std::string> missing;
  for (const char* tool : {"make", "gcc", "ld", "bc", "bison", "flex", "tar", "xz"}) {
    if (find_program(tool).empty()) missing.emplace_back(tool);
  }
  if (!is_regular("/usr/include/libelf.h") && !is_regular("/usr/include/elfutils/libelf.h")) {
    missing.emplace_back("libelf.h");
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    return error(Errc::unavailable, "building the guest kernel needs " + list +
                                        ", not found on this host; install: " + fix);
  }
  struct statvfs vfs{};
  if (::statvfs(kernels_dir().c_str(), &vfs) == 0) {
    const std::uint64_t avail = std::uint64_t{vfs.f_bavail} * vfs.f_frsize;
    if (avail < kNeededDiskBytes) {
      return error(Errc::unavailable,
                   "building the guest kernel needs about 2.5 GiB free in " + kernels_dir().string() +
                       "; " + std::to_string(avail >> 20) + " MiB available");
    }
  }
  return ok_status();
}

Result<KernelPaths> KernelBuilder::ensure() {
  auto paths = cached_or_built();
  if (paths) FCVM_RETURN_IF_ERROR(share_asset(options_.data_dir, paths->dir).with_context("guest kernel: "));
  return paths;
}

Result<KernelPaths> KernelBuilder::cached_or_built() {
  auto version = source_version();
  if (!version) return version.status();
  const std::string key = kernel_build::cache_key(*version, options_.fragment);
  const fs::path kernels = kernels_dir();
  if (is_complete(kernels / key)) return paths_in(kernels / key, key, *version);

  std::error_code ec;
  fs::create_directories(kernels, ec);
  if (ec) return error(Errc::io, "create " + kernels.string() + ": " + ec.message());
  FCVM_RETURN_IF_ERROR(preflight());

  log_->debug("waiting for the kernel build lock " + (kernels / ".lock").string());
  auto lock = FileLock::acquire(kernels / ".lock", FileLock::Mode::exclusive);
  if (!lock) return lock.status();
  // Another fcvm may have built it while this one waited for the lock.
  if (is_complete(kernels / key)) return paths_in(kernels / key, key, *version);
  // Under the lock nobody else builds, so every .build-* left is from a crashed build, and
  // a .trash-* one a background removal that did not finish.
  for (const auto& entry : fs::directory_iterator(kernels, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(".build-") || name.starts_with(".trash-")) {
      log_->info("removing the files of an earlier kernel build: " + entry.path().string());
    }
  }
  TempDir::remove_stale(kernels, ".build-");
  TempDir::remove_stale(kernels, ".trash-");
  return build(key, *version);
}

Result<KernelPaths> KernelBuilder::build(const std::string& key, const std::string& version) {
  const fs::path kernels = kernels_dir();
  const fs::path target = kernels / key;
  const fs::path failed_log = kernels / "last-failed-build.log";

  auto tmp = TempDir::create(kernels, ".build-" + key + "-" + std::to_string(::getpid()) + "-");
  if (!tmp) return tmp.status();
  const fs::path work = tmp->path();
  const fs::path src = work / "src";
  const fs::path out = work / "out";
  const fs::path log_path = work / "build.log";
  std::error_code ec;
  fs::create_directories(src, ec);
  if (!ec) fs::create_directories(out, ec);
  if (ec) return error(Errc::io, "create " + work.string() + ": " + ec.message());
  UniqueFd log_fd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!log_fd) return errno_status("create " + log_path.string());

  // Keeps the log of a failed build where the user can read it after `tmp` is gone.
  auto failed = [&](Status status) -> Status {
    std::error_code ignored;
    fs::copy_file(log_path, failed_log, fs::copy_options::overwrite_existing, ignored);
    return status.with_context("guest kernel build: ");
  };
  auto step = [&](const std::string& what, const std::vector<std::string>& argv,
                  const std::function<void(std::string_view)>& on_line = {},
                  const std::function<void()>& on_tick = {}) {
    return run_build_step(what, argv, src, log_fd.get(), failed_log, on_line, on_tick);
  };

  const auto started = Clock::now();
  log_->info("building the guest kernel from " + options_.source_package + " " + version +
             " (about 4 minutes with 2 CPUs) in " + work.string());

  // 1. Source and configuration.
  Status s = step("extract " + options_.source_tarball.string(),
                  {"tar", "-xf", options_.source_tarball.string(), "-C", src.string(),
                   "--strip-components=1"});
  if (!s.ok()) return failed(s);
  const fs::path fragment_path = work / "fcvm-guest.config";
  s = write_file_atomic(fragment_path, options_.fragment);
  if (!s.ok()) return failed(s);
  s = step("make tinyconfig", {"make", "tinyconfig"});
  if (s.ok()) {
    s = step("merge_config.sh", {(src / "scripts/kconfig/merge_config.sh").string(), "-m",
                                 ".config", fragment_path.string()});
  }
  if (s.ok()) s = step("make olddefconfig", {"make", "olddefconfig"});
  if (!s.ok()) return failed(s);

  // 2. Every option the fragment asks for must have survived olddefconfig.
  auto dot_config = read_file(src / ".config");
  if (!dot_config) return failed(dot_config.status());
  const auto unmet = kernel_build::unmet_requirements(options_.fragment, *dot_config);
  if (!unmet.empty()) {
    std::string list;
    for (const auto& u : unmet) list += (list.empty() ? "" : ", ") + u;
    return failed(error(Errc::internal,
                        "the kernel .config does not match guest/kernel/fcvm-guest.config after "
                        "`make olddefconfig` (dependencies not met in " +
                            options_.source_package + " " + version + "): " + list));
  }

  // 3. Compile, with progress.
  const unsigned jobs = options_.jobs ? options_.jobs : usable_cpus();
  Progress progress(options_.progress_fd, "fcvm: building guest kernel");
  s = step("make vmlinux bzImage", {"make", "-j" + std::to_string(jobs), "vmlinux", "bzImage"},
           [&](std::string_view line) {
             if (kernel_build::is_compile_step(line)) progress.compile_step();
           },
           [&] { progress.tick(); });
  progress.finish();
  if (!s.ok()) return failed(s);

  // 4. Publish: fill out/, then one rename makes it the cache entry.
  s = copy_synced(src / "vmlinux", out / "vmlinux");
  if (s.ok()) s = copy_synced(src / "arch/x86/boot/bzImage", out / "bzImage");
  if (s.ok()) s = copy_synced(src / ".config", out / "config");
  if (s.ok()) s = write_file_atomic(out / "source-version", version + "\n");
  log_fd.reset();
  if (s.ok()) s = copy_synced(log_path, out / "build.log");
  if (s.ok()) s = fsync_dir(out);
  if (!s.ok()) return failed(s);
  if (::rename(out.c_str(), target.c_str()) != 0) {
    const int err = errno;
    if (!((err == EEXIST || err == ENOTEMPTY) && is_complete(target))) {
      return failed(errno_status("rename " + out.string() + " to " + target.string(), err));
    }
    // A complete entry appeared despite the lock (placed by hand): use it.
  }
  s = fsync_dir(kernels);
  if (!s.ok()) return s;
  log_->info("guest kernel built in " + format_duration(Clock::now() - started) + ": " +
             target.string());
  discard_build_tree(*tmp, kernels / (".trash-" + key + "-" + std::to_string(::getpid())));
  return paths_in(target, key, version);
}

}  // namespace fcvm
