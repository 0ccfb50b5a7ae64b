// ClientRecord: what a restarted page server needs to take over a running VMM: which
// process (pid plus its start time, so a reused pid is not mistaken for it), the regions of
// its handshake and the ranges its guest removed. Written atomically into the serve
// process's state dir at handshake and after every remove event; removed when the VMM
// leaves.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <vector>

#include "fcvm/result.h"
#include "guest_region.h"

namespace fcvm::uffd {

struct ClientRecord {
  static constexpr int kVersion = 1;

  pid_t pid = 0;
  std::uint64_t start_time = 0;  // /proc/PID/stat field 22, clock ticks since boot
  std::vector<GuestRegion> regions;
  std::map<std::uint64_t, std::uint64_t> removed;  // [start, end) in the VMM's addresses

  static std::filesystem::path path_in(const std::filesystem::path& state_dir, pid_t pid);
  // Writes (temp + fsync + rename, 0600) under state_dir/clients/, creating it (0700).
  Status save(const std::filesystem::path& state_dir) const;
  // not_found when absent; protocol when malformed or of another version. The regions are
  // checked against an image of `image_size` bytes like a handshake.
  static Result<ClientRecord> load(const std::filesystem::path& state_dir, pid_t pid,
                                   std::uint64_t image_size, std::uint64_t host_page_size);
  static void remove(const std::filesystem::path& state_dir, pid_t pid);
  // PIDs with a record.
  static std::vector<pid_t> list(const std::filesystem::path& state_dir);
};

// The start time of process `pid`, nullopt when it does not exist.
std::optional<std::uint64_t> process_start_time(pid_t pid);

}  // namespace fcvm::uffd
