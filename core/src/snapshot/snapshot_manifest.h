// SnapshotManifest: what <data_dir>/snapshots/<tag>/manifest.json says about a snapshot, the
// persisted form beside the live objects (versioned, like VmRecord).
//
// Minimal version written by the snapshot helper before h/transport's manifest lands; the
// lead reconciles the two. Paths of files inside the snapshot are stored relative to its
// directory, so a snapshot built in a temp directory and renamed into place stays valid.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include <fcvm/agent_plan.h>
#include <nlohmann/json.hpp>

#include "fcvm/network.h"
#include "fcvm/plugin.h"
#include "fcvm/result.h"
#include "fcvm/storage.h"

namespace fcvm {

// The guest machine a VM was built as: what a restore must reproduce, and what tells two
// snapshots of different kernels or images apart.
struct GuestMachine {
  unsigned vcpus = 0;        // 0: not known (a manifest of version 1)
  unsigned memory_mib = 0;
  std::filesystem::path kernel;
  std::filesystem::path initrd;
  std::string image_digest;  // "sha256:..." of the image the rootfs came from
  bool operator==(const GuestMachine&) const = default;
};

struct SnapshotManifest {
  // The format written by this build; newer versions are refused with the upgrade to make.
  // Version 2 added vmm_version and machine; version 1 manifests read with them empty.
  // Version 3 added cache_healthy and startup_output: an older fcvm would restore such an
  // entry as one held at its barrier, so it must refuse it.
  static constexpr int kVersion = 3;

  std::string tag;
  std::string created;        // RFC3339 UTC
  std::string source_name;    // the VM it was taken from
  std::string source_id;
  std::string image;          // the source's image reference
  bool disk_only = false;     // no VMM state or memory: clones cold-boot
  std::map<PluginKind, std::string> plugins;  // backends the source ran on; clones use them
  std::string vmm_version;    // the VMM plugin's own version, which wrote the state file
  GuestMachine machine;
  // Relative to the snapshot directory; empty for disk-only snapshots.
  std::filesystem::path state_file;
  std::filesystem::path memory_file;
  DiskLease disks;                      // drive paths relative to the snapshot directory
  std::optional<NetworkLease> network;  // the source's network (clones get the same address)
  agent::Process main_process;          // defaults for exec sessions in clones
  std::filesystem::path rootfs;         // the image rootfs on the host, for exec --user
  // The guest kernel's boot id when the snapshot was taken: a restored clone must report
  // the same, or it is not this snapshot's guest continuing (wrong memory: a fresh boot).
  std::string boot_id;
  std::uint64_t pause_ms = 0;           // how long the source was paused
  // Startup snapshots (the cache of `fcvm podman run`, session/startup_cache.h) only: the key
  // of the run it caches. Taken at the startup barrier, where the guest holds before its
  // container starts; or, with cache_healthy, once the running container was first healthy,
  // with the output it had sent by then in `startup_output` (relative; see
  // encode_startup_output).
  std::string cache_key;
  bool cache_healthy = false;
  std::filesystem::path startup_output;
  bool is_cache() const { return !cache_key.empty(); }

  // Absolute forms, given the snapshot's directory.
  SnapshotFiles files(const std::filesystem::path& dir) const;
  DiskLease disks_in(const std::filesystem::path& dir) const;
};

nlohmann::json to_json(const SnapshotManifest& manifest);
// Refuses a missing or newer version and fields of the wrong type, naming the field.
Result<SnapshotManifest> snapshot_manifest_from_json(const nlohmann::json& doc);

// <dir>/manifest.json, read and parsed; not_found when absent.
Result<SnapshotManifest> read_snapshot_manifest(const std::filesystem::path& dir);
// Writes <dir>/manifest.json atomically (0600).
Status write_snapshot_manifest(const std::filesystem::path& dir, const SnapshotManifest& manifest);

}  // namespace fcvm
