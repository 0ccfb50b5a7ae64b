// Clones on disk and in memory files, each against its baseline measured in the same run:
//   disk clone    reflink (FICLONE on btrfs) vs a full copy of every byte
//   base build    mksquashfs and `mkfs.ext4 -d` vs copying files into a mounted ext4
//   mem unshare   reflink vs the io_uring sparse copy vs copy_file_range vs a read/write
//                 loop, of a memory image with 10% of its pages allocated
// Every benchmark reports `speedup`: baseline time / its time.
//
// Needs root (loop-mounted btrfs and ext4 in a temp dir, removed at the end). Sizes:
//   FCVM_BENCH_DISK_MIB (default 256; the figure is 1024)
//   FCVM_BENCH_MEM_MIB  (default 256; the figure is 1024)
//   FCVM_BENCH_ROOTFS   (default /usr/lib/python3: a tree of a few thousand files)
//   build/bench/fcvm_storage_clone_bench
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "fcvm/child_process.h"
#include "fcvm/file_clone.h"
#include "fcvm/loop_device.h"
#include "fcvm/mount.h"
#include "fcvm/unique_fd.h"
#include "loop_filesystem.h"

namespace {

namespace fs = std::filesystem;
using fcvm::testing::LoopFilesystem;

std::uint64_t env_mib(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && std::atoll(v) > 0 ? static_cast<std::uint64_t>(std::atoll(v)) : fallback;
}
const std::uint64_t kDiskMib = env_mib("FCVM_BENCH_DISK_MIB", 256);
const std::uint64_t kMemMib = env_mib("FCVM_BENCH_MEM_MIB", 256);
const fs::path kRootfs = std::getenv("FCVM_BENCH_ROOTFS") ? std::getenv("FCVM_BENCH_ROOTFS")
                                                          : "/usr/lib/python3";

std::map<std::string, double> g_baseline;  // group -> seconds per iteration

// Filesystems for the whole run, made on first use.
LoopFilesystem& loop_fs(const std::string& fstype, std::uint64_t mib) {
  static std::map<std::string, LoopFilesystem> made;
  auto it = made.find(fstype);
  if (it == made.end()) {
    auto fs = LoopFilesystem::create(fstype, mib);
    if (!fs) throw std::runtime_error(fs.status().message());
    it = made.emplace(fstype, std::move(*fs)).first;
  }
  return it->second;
}

std::string skip_reason() {
  for (const char* fstype : {"btrfs", "ext4"}) {
    if (auto why = LoopFilesystem::missing_prerequisite(fstype); !why.empty()) return why;
  }
  return {};
}

void check(const fcvm::Status& st) {
  if (!st.ok()) throw std::runtime_error(st.message());
}

// `mib` MiB at `path`: every byte random (dense), or `fraction` of the 4 KiB pages random
// and the rest holes.
void make_file(const fs::path& path, std::uint64_t mib, double fraction) {
  if (fs::exists(path)) return;
  fcvm::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(mib << 20)) != 0)
    throw std::runtime_error("create " + path.string());
  std::mt19937_64 rng(7);
  std::vector<std::uint64_t> page(512);
  const std::uint64_t pages = (mib << 20) / 4096;
  for (std::uint64_t p = 0; p < pages; ++p) {
    if (fraction < 1.0 && std::uniform_real_distribution<>(0, 1)(rng) >= fraction) continue;
    for (auto& w : page) w = rng();
    if (::pwrite(fd.get(), page.data(), 4096, static_cast<off_t>(p * 4096)) != 4096)
      throw std::runtime_error("write " + path.string());
  }
  ::fsync(fd.get());
}

// Runs `copy(in, out)` into a fresh file per iteration, fsynced; reports speedup against
// the group's baseline (the first benchmark of the group sets it).
template <class Copy>
void timed_copies(benchmark::State& state, const std::string& group, bool baseline,
                  const fs::path& source, const fs::path& target, Copy copy) {
  double total = 0;
  for (auto _ : state) {
    fs::remove(target);
    fcvm::UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
    fcvm::UniqueFd out(::open(target.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    const auto start = std::chrono::steady_clock::now();
    copy(in.get(), out.get());
    ::fsync(out.get());
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(took);
    total += took;
  }
  fs::remove(target);
  const double mean = total / static_cast<double>(state.iterations());
  if (baseline) g_baseline[group] = mean;
  if (g_baseline.count(group)) state.counters["speedup"] = g_baseline[group] / mean;
}

void reflink(int in, int out) {
  if (::ioctl(out, FICLONE, in) != 0) throw std::runtime_error("FICLONE failed");
}

// A read/write loop over every byte, holes included.
void read_write_loop(int in, int out) {
  std::vector<char> buf(1 << 20);
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(in, buf.data(), buf.size(), at);
    if (n < 0) throw std::runtime_error("read");
    if (n == 0) return;
    if (::pwrite(out, buf.data(), static_cast<size_t>(n), at) != n) throw std::runtime_error("write");
    at += n;
  }
}

void copy_file_range_all(int in, int out) {
  for (;;) {
    const ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, 1 << 30, 0);
    if (n < 0) throw std::runtime_error("copy_file_range");
    if (n == 0) return;
  }
}

void sparse_copy(int in, int out) { check(fcvm::copy_data_extents(in, out, "bench copy")); }

#define SKIP_UNLESS_ROOT(state)                      \
  if (auto why = skip_reason(); !why.empty()) {      \
    state.SkipWithError(why.c_str());                \
    return;                                          \
  }

// ---- disk clone ----

fs::path disk_image() {
  auto& btrfs = loop_fs("btrfs", std::max<std::uint64_t>(kDiskMib * 3 + 512, 1024));
  const fs::path image = btrfs.mount_point() / "disk.img";
  make_file(image, kDiskMib, 1.0);
  return image;
}

void BM_DiskClone_FullCopy(benchmark::State& state) {
  SKIP_UNLESS_ROOT(state);
  const auto image = disk_image();
  timed_copies(state, "disk", true, image, image.parent_path() / "copy.img", read_write_loop);
}
BENCHMARK(BM_DiskClone_FullCopy)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_DiskClone_Reflink(benchmark::State& state) {
  SKIP_UNLESS_ROOT(state);
  const auto image = disk_image();
  timed_copies(state, "disk", false, image, image.parent_path() / "clone.img", reflink);
}
BENCHMARK(BM_DiskClone_Reflink)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(20);

// ---- base build ----

// Builds a base per iteration with `build(out)`; `out` is deleted after each.
void timed_builds(benchmark::State& state, bool baseline,
                  const std::function<void(const fs::path&)>& build) {
  auto& scratch = loop_fs("ext4", 4096);
  const fs::path out = scratch.mount_point() / "base.out";
  double total = 0;
  for (auto _ : state) {
    fs::remove(out);
    const auto start = std::chrono::steady_clock::now();
    build(out);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(took);
    total += took;
  }
  fs::remove(out);
  const double mean = total / static_cast<double>(state.iterations());
  if (baseline) g_baseline["base"] = mean;
  if (g_baseline.count("base")) state.counters["speedup"] = g_baseline["base"] / mean;
}

std::string rootfs_mib() {
  auto du = fcvm::run_command({"du", "-sm", kRootfs.string()});
  return du ? du->substr(0, du->find('\t')) : "?";
}

void run(const std::vector<std::string>& argv) { check(fcvm::run_command(argv).status()); }

void BM_BaseBuild_CopyIntoMountedExt4(benchmark::State& state) {
  SKIP_UNLESS_ROOT(state);
  state.SetLabel(kRootfs.string() + " (" + rootfs_mib() + " MiB)");
  timed_builds(state, true, [](const fs::path& out) {
    run({"truncate", "-s", "256M", out.string()});
    run({"/usr/sbin/mkfs.ext4", "-q", "-F", out.string()});
    auto loop = fcvm::LoopDevice::attach(out);
    check(loop.status());
    const fs::path mnt = out.parent_path() / "mnt";
    fs::create_directories(mnt);
    auto mount = fcvm::Mount::create(loop->device(), mnt, "ext4");
    check(mount.status());
    run({"cp", "-a", kRootfs.string() + "/.", mnt.string()});
    check(mount->unmount());
    check(loop->detach());
    fcvm::UniqueFd fd(::open(out.c_str(), O_RDONLY | O_CLOEXEC));
    ::fsync(fd.get());
  });
}
BENCHMARK(BM_BaseBuild_CopyIntoMountedExt4)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_BaseBuild_Mkfs_Ext4_d(benchmark::State& state) {
  SKIP_UNLESS_ROOT(state);
  timed_builds(state, false, [](const fs::path& out) {
    run({"/usr/sbin/mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-d",
         kRootfs.string(), out.string(), "256M"});
    fcvm::UniqueFd fd(::open(out.c_str(), O_RDONLY | O_CLOEXEC));
    ::fsync(fd.get());
  });
}
BENCHMARK(BM_BaseBuild_Mkfs_Ext4_d)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_BaseBuild_Squashfs(benchmark::State& state) {
  SKIP_UNLESS_ROOT(state);
  timed_builds(state, false, [](const fs::path& out) {
    run({"mksquashfs", kRootfs.string(), out.string(), "-comp", "zstd", "-noappend", "-quiet",
         "-no-progress"});
    fcvm::UniqueFd fd(::open(out.c_str(), O_RDONLY | O_CLOEXEC));
    ::fsync(fd.get());
  });
}
BENCHMARK(BM_BaseBuild_Squashfs)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

// ---- memory image unshare ----

// The same image on both filesystems: ext4 for the copies (it cannot reflink, and
// copy_file_range there really copies), btrfs for the reflink.
fs::path mem_image(const std::string& fstype) {
  const std::uint64_t fs_mib = std::max<std::uint64_t>(kMemMib * 3 + 512, 1024);
  auto& lfs = fstype == "btrfs" ? loop_fs("btrfs", std::max<std::uint64_t>(kDiskMib * 3 + 512, fs_mib))
                                : loop_fs("ext4", 4096);
  const fs::path image = lfs.mount_point() / "mem.img";
  make_file(image, kMemMib, 0.10);
  return image;
}

void BM_MemUnshare_ReadWriteLoop(benchmark::State& state) {
  SKIP_UNLESS_ROOT(state);
  const auto image = mem_image("ext4");
  timed_copies(state, "mem", true, image, image.parent_path() / "mem.copy", read_write_loop);
}
BENCHMARK(BM_MemUnshare_ReadWriteLoop)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_MemUnshare_CopyFileRange(benchmark::State& state) {
  SKIP_UNLESS_ROOT(state);
  const auto image = mem_image("ext4");
  timed_copies(state, "mem", false, image, image.parent_path() / "mem.copy", copy_file_range_all);
}
BENCHMARK(BM_MemUnshare_CopyFileRange)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_MemUnshare_UringSparseCopy(benchmark::State& state) {
  SKIP_UNLESS_ROOT(state);
  const auto image = mem_image("ext4");
  timed_copies(state, "mem", false, image, image.parent_path() / "mem.copy", sparse_copy);
}
BENCHMARK(BM_MemUnshare_UringSparseCopy)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_MemUnshare_Reflink(benchmark::State& state) {
  SKIP_UNLESS_ROOT(state);
  const auto image = mem_image("btrfs");
  timed_copies(state, "mem", false, image, image.parent_path() / "mem.clone", reflink);
}
BENCHMARK(BM_MemUnshare_Reflink)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(20);

}  // namespace

BENCHMARK_MAIN();
