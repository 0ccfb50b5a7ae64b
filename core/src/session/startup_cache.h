// The startup-snapshot cache of `fcvm podman run`: a run whose inputs match a startup
// snapshot restores it instead of booting.
//
// The first run of a key boots with a held plan: the agent sets up root, network and /etc,
// says READY and waits; the VM's process snapshots the guest there (a snapshot whose
// manifest carries the key, tag startup_cache_tag(key)) and then sends GO, which starts the
// container. Later runs of the same key restore that snapshot, attach (boot id check, clock,
// RNG) and send GO: the container starts from the same state, so its output is the cold
// run's. Entries are ordinary snapshots (`fcvm snapshot ls` marks them cache, `snapshot rm`
// and `fcvm gc` remove them); concurrent first runs each build in a temp directory and the
// first rename wins (snapshot/snapshot_store.h).
//
// With a health check the moment is another: "ready" for such a container means healthy
// (a server that has loaded what it serves). The first run boots without holding, and its
// VM's process snapshots the running guest when the first probe passes, keeping the
// output the container had sent by then. Later runs restore that snapshot, replay the
// output and go on with the container already running, healthy after their first probe.
//
// Threading: plain functions.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <fcvm/agent_plan.h>

#include "fcvm/plugin.h"
#include "fcvm/storage.h"
#include "fcvm/result.h"
#include "fcvm/log.h"
#include "health/health_check.h"
#include "supervise/output_chunk.h"
#include "session/guest_assets.h"
#include "snapshot/snapshot_store.h"

namespace fcvm {

// Everything that decides what a container's start looks like. Any change is a miss.
struct StartupInputs {
  std::string image_digest;
  agent::Process process;  // resolved: args, env, cwd, user, groups
  unsigned vcpus = 1;
  unsigned memory_mib = 256;
  bool read_only = false;  // --read-only: the root the snapshot holds is mounted read-only
  GuestAssets assets;      // kernel and initramfs (which holds the agent)
  std::map<PluginKind, std::string> plugins;  // vmm, storage, network
  std::string vmm_version;  // the VMM plugin's version, which writes and reads the state file
  // When the snapshot is taken: empty at the startup barrier; with a health check, its
  // canonical form (startup_moment_of), as the entry holds a container that ran until then.
  std::string moment;
};

// The `moment` of a run with `health` (health_check.h): "" without a check.
std::string startup_moment_of(const HealthCheckSpec& health);

// A healthy-moment snapshot keeps at most this much output; a container that printed
// more before it was healthy is not cached.
inline constexpr std::size_t kMaxStartupOutput = 1 << 20;
// The file format of a snapshot's startup output: per chunk 'o' or 'e', the length as 4
// bytes little-endian, the bytes. decode refuses anything else (the file is read back from
// the data dir) with Errc::protocol.
std::string encode_startup_output(const std::vector<OutputChunk>& chunks);
Result<std::vector<OutputChunk>> decode_startup_output(std::string_view bytes);

// The inputs' key: SHA-256 (hex) of their canonical form. The kernel and initramfs count by
// content identity (path, size and modification time; the initramfs path names the agent's
// hash). Errc::io when a guest asset cannot be read.
Result<std::string> startup_cache_key(const StartupInputs& inputs);

// The snapshot tag of a key: "cache-" and its first 20 hex digits.
std::string startup_cache_tag(const std::string& key);

// How many startup snapshots a data dir keeps. Each holds the guest's memory image and a
// disk; a run of a new key beyond this evicts the least recently used entries.
inline constexpr std::size_t kStartupCacheEntries = 8;

// Marks the entry in `dir` as just used (its directory's mtime), for eviction order.
void touch_startup_snapshot(const std::filesystem::path& dir);

// Removes a startup snapshot: its disks through `storage` (the plugin named
// `storage_name`; invalid_argument, leaving it, when its disks are another plugin's), then
// the snapshot.
Status remove_startup_snapshot(SnapshotStore& store, const StoredSnapshot& snap, StorageBackend& storage,
                               const std::string& storage_name);

// Keeps the `keep` most recently used startup snapshots of `store` (never evicting
// `current`, the one just taken) and removes the others through `remove`, which gives back
// their disks and then the snapshot. Entries `remove` refuses (disks of another storage
// plugin) stay for `fcvm gc --cache`. Returns the tags removed. Never throws.
std::vector<std::string> prune_startup_snapshots(
    const SnapshotStore& store, const std::string& current, std::size_t keep,
    const std::function<Status(const StoredSnapshot&)>& remove, const LoggerPtr& log);

}  // namespace fcvm
