// Shared pieces of the VM-level benchmarks: the scratch data dir, the example image, the
// bare-QEMU baseline, timed runs of fcvm, and per-process memory accounting.
//
// Threading: benchmarks run one at a time on the main thread; nothing here is thread-safe.
// Errors throw std::runtime_error (a benchmark binary, not a plugin boundary); the caller
// turns them into SkipWithError with the message.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace fcvm::bench {

// $name, or `fallback` when unset or empty.
std::string env_or(const char* name, const char* fallback);
// Repetitions of each measurement: $FCVM_BENCH_REPS, default 3.
int reps();
// The combination's plugin flags for fcvm commands, from $FCVM_BENCH_VMM, $FCVM_BENCH_STORAGE
// and $FCVM_BENCH_NETWORK ("none" or unset: no --network).
std::vector<std::string> plugin_flags();

// The guest kernel: $FCVM_BENCH_KERNEL, else $FCVM_TEST_KERNEL; empty when neither is set.
std::string guest_kernel();

// Why VM benchmarks cannot run here ("needs root", "no guest kernel: ..."), or empty.
std::string vm_skip_reason();

// A scratch directory for the whole run (data dir, example image, baseline initramfs),
// created on first use and removed by remove_scratch_dir() at exit.
const std::filesystem::path& scratch_dir();
void remove_scratch_dir();

// argv of the fcvm binary of this build with the scratch data dir, followed by `args`.
std::vector<std::string> fcvm_argv(std::vector<std::string> args);

// The example image (examples/hello) built once into the scratch dir, as "oci:DIR:hello".
std::string hello_image();

// True when the host has hardware KVM (what vmm-qemu's "auto" uses).
bool hardware_kvm();

// A QEMU command line that boots the guest kernel to an init that powers off at once, with
// the terms vmm-qemu adds for this host (accelerator, TSC rate under TCG): the cost of a
// boot alone, the baseline of cold starts.
std::vector<std::string> bare_boot_argv();

struct TimedRun {
  double first_output_s = -1;  // until the first byte on stdout; -1 when none came
  double exit_s = 0;           // until the process exited
  std::string output;          // its stdout
};
// Runs argv to its end; throws when it cannot start or exits unsuccessfully.
TimedRun timed_run(const std::vector<std::string>& argv);

// Proportional set size of a process, from /proc/PID/smaps_rollup, in bytes. PSS splits a
// shared page among its users, so the sum over clones is what they really cost.
struct Pss {
  std::uint64_t anon = 0, file = 0, shmem = 0;
  std::uint64_t total() const { return anon + file + shmem; }
};
Pss pss_of(pid_t pid);

// The direct children of `pid` (from /proc/PID/task/*/children).
std::vector<pid_t> children_of(pid_t pid);

// Bytes allocated on disk below `dir` (st_blocks * 512, hard links counted once). With
// `owned_only`, files also linked from elsewhere (a clone's name for its snapshot's memory
// image) are left out: they cost the clone nothing.
std::uint64_t allocated_bytes(const std::filesystem::path& dir, bool owned_only = false);

}  // namespace fcvm::bench
