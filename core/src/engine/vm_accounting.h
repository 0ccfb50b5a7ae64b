// What `fcvm ls --json` and `fcvm snapshot ls --json` report about memory and disk use.
// Never RSS alone: clones share pages (File memory) and extents (reflinked disks).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

namespace fcvm {

// Proportional set size of process `pid` from /proc/PID/smaps_rollup, in bytes:
// {"rss", "pss", "pss_anon", "pss_file", "pss_shmem"}. nullopt when the process is gone
// or the file is unreadable (another user's process without privilege).
std::optional<nlohmann::json> process_pss(pid_t pid);

// Bytes the regular files under `dir` occupy: {"apparent_bytes", "allocated_bytes",
// "shared_bytes", "owned_bytes", "method"}. shared: extents the filesystem flags as shared
// (FIEMAP_EXTENT_SHARED: reflinks, btrfs snapshots) plus whole files with other hard links
// (forks of a memory image); owned: the rest of the allocation. method "fiemap", or
// "allocated" where the filesystem has no FIEMAP (then only hard links count as shared).
nlohmann::json disk_usage(const std::filesystem::path& dir);

}  // namespace fcvm
