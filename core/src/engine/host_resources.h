// Checks that the host can hold a VM before anything is created for it: guest RAM is a
// file under the data dir (QEMU's memory-backend-file), so a full disk would otherwise kill
// the running guest with SIGBUS, and an overcommitted host would swap or OOM.
#pragma once

#include <cstdint>
#include <filesystem>

#include "fcvm/result.h"

namespace fcvm {

// Room a VM needs on the data dir's filesystem besides its RAM file (scratch disk, logs).
inline constexpr std::uint64_t kVmDiskSlackMib = 64;

// Fails (unavailable) when the host has less available memory (MemAvailable) than
// `memory_mib`, or the filesystem holding `vm_parent` (or its nearest existing ancestor) has
// less free space than `memory_mib` + kVmDiskSlackMib. The message says how much there is,
// how much is needed and what to do. Reads only; thread-safe.
Status check_host_resources(const std::filesystem::path& vm_parent, unsigned memory_mib);

}  // namespace fcvm
