// What `fcvm stats` shows of a running VM, measured on the host from its VMM process: CPU
// (its user+system time over a sample), memory (PSS against the guest's size), network
// (its tap device's counters, from the guest's side) and block I/O (what the VMM read from
// and wrote to storage). No cgroups are needed, and nothing is asked of the guest.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "state/vm_record.h"

namespace fcvm {

struct VmStats {
  std::string id;
  std::string name;
  double cpu_percent = 0;                  // of one host CPU (2 busy vCPUs: up to 200)
  std::optional<std::uint64_t> pss_bytes;  // the VMM's proportional set size
  std::uint64_t memory_limit_bytes = 0;    // the guest's memory; 0 when not recorded
  std::uint64_t net_input_bytes = 0;       // received by the guest
  std::uint64_t net_output_bytes = 0;      // sent by the guest
  std::uint64_t block_read_bytes = 0;
  std::uint64_t block_write_bytes = 0;
  std::optional<unsigned> pids;            // guest processes (the agent included)
};
nlohmann::json to_json(const VmStats& stats);

// A VMM's counters at one moment; sample() twice and compare for CPU.
struct VmmSample {
  std::uint64_t cpu_ticks = 0;  // utime + stime, in clock ticks
  std::chrono::steady_clock::time_point at;
};
// nullopt when the process is gone.
std::optional<VmmSample> sample_vmm(pid_t pid);

// The stats of `record`'s VMM, with CPU over [before, now]. not_found when it has no live
// VMM (not running, or still booting).
Result<VmStats> measure_vm(const VmRecord& record, const VmmSample& before);

}  // namespace fcvm
