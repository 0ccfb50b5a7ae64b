// The page-server counters a serve process publishes for `fcvm ls --json` and
// `fcvm snapshot ls --json`: <serve dir>/memory-stats.json, rewritten atomically (0600)
// while the counters change. Format (version 1):
//   {"version": 1, "updated": RFC3339, "clients": [MemoryClientStats::to_json(), ...]}
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "fcvm/memory.h"
#include "fcvm/result.h"

namespace fcvm {

struct MemoryStatsFile {
  static constexpr int kVersion = 1;

  static std::filesystem::path in(const std::filesystem::path& serve_dir);
  // Writes `clients` (temp + fsync + rename).
  static Status write(const std::filesystem::path& serve_dir, const std::vector<MemoryClientStats>& clients);
  // The clients array; an empty array when the file is absent, unreadable or of another
  // version (the serve may not have written it yet).
  static nlohmann::json read_clients(const std::filesystem::path& serve_dir);
  // The entry of VMM `pid` among read_clients(), connected ones first; nullopt when none.
  static std::optional<nlohmann::json> client(const std::filesystem::path& serve_dir, pid_t pid);
};

}  // namespace fcvm
