// SnapshotManifest: who wrote a snapshot and what it holds, persisted beside its files as
// one versioned JSON document (manifest.json). SnapshotFiles names a VMM's state and memory
// files; only the manifest says which VMM (and which version of it) wrote them, for which
// machine, disks, network, image, kernel and agent, so a restore can refuse a mismatch
// before it starts anything.
//
// Threading: plain data; the functions are thread-safe and never throw.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "fcvm/network.h"
#include "fcvm/result.h"
#include "fcvm/storage.h"
#include "fcvm/vmm.h"

namespace fcvm {

struct SnapshotManifest {
  // The format written by this build. A manifest of another format is refused: a snapshot
  // is only as good as its exact reading, so there is no best-effort upgrade.
  static constexpr int kFormatVersion = 1;
  static constexpr const char* kFileName = "manifest.json";

  struct Plugin {
    std::string name;     // "vmm-qemu"
    std::string version;  // the plugin descriptor's version
  };

  Plugin vmm;
  std::string memory_plugin;  // the memory backend clones should use by default ("file")
  // The machine: what a restore keeps from the snapshot.
  unsigned vcpus = 1;
  unsigned memory_mib = 0;
  std::string cmdline;
  SnapshotFiles files;  // relative to the snapshot directory
  std::optional<DiskLease> disks;
  std::optional<NetworkLease> network;
  std::string image_reference;  // as the user gave it
  std::string image_digest;     // "sha256:..."
  std::filesystem::path kernel;
  std::string kernel_sha256;    // hex
  std::filesystem::path initrd;
  int agent_protocol = 0;       // agent::kProtocolVersion of the agent in the snapshot
  std::string boot_id;          // the agent's boot id: a restored clone must report it
  std::string created;          // RFC3339 UTC
};

// The JSON form, with "format_version".
nlohmann::json to_json(const SnapshotManifest& manifest);
// Parses a manifest. Refuses another format version (naming both versions and the fix),
// a missing required field and any field of the wrong type, naming the field.
Result<SnapshotManifest> snapshot_manifest_from_json(const nlohmann::json& doc);

// Writes `manifest` to <dir>/manifest.json atomically (temp + fsync + rename), mode 0600.
Status write_snapshot_manifest(const std::filesystem::path& dir, const SnapshotManifest& manifest);
// Reads <dir>/manifest.json. Errors name the file: not_found, invalid_argument for a
// truncated or malformed document or another format version.
Result<SnapshotManifest> read_snapshot_manifest(const std::filesystem::path& dir);

}  // namespace fcvm
