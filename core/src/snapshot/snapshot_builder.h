// Taking a snapshot of a running VM, in the fcvm process that owns it: pause, VMM state and
// memory, disks through the storage plugin, manifest, resume; built in a temp directory and
// renamed into place (snapshot/snapshot_store.h).
//
// Threading: the VM's event loop calls it; it blocks that loop for the whole snapshot (the
// guest is paused for most of it anyway).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "control/control_protocol.h"
#include "fcvm/log.h"
#include "fcvm/network.h"
#include "fcvm/result.h"
#include "fcvm/storage.h"
#include "fcvm/vmm.h"
#include "snapshot/snapshot_manifest.h"
#include "snapshot/snapshot_store.h"

namespace fcvm {

// What the owning process knows about the VM being snapshotted.
struct SnapshotSource {
  std::string name;
  std::string id;
  std::string image;
  std::map<PluginKind, std::string> plugins;
  std::string vmm_version;
  GuestMachine machine;
  DiskLease disks;
  std::optional<NetworkLease> network;
  agent::Process main_process;
  std::filesystem::path rootfs;
  std::string boot_id;  // the guest agent's, from its HELLO or ATTACHED; empty: unknown
  // A startup snapshot's cache key (session/startup_cache.h); empty for other snapshots.
  std::string cache_key;
  // A startup snapshot taken once the container was healthy: the output it had sent, as
  // encode_startup_output wrote it; stored beside the manifest.
  std::optional<std::string> startup_output;
};

// Takes the snapshot `request` asks for (control/control_protocol.h). The VM is resumed on
// every path, failure included, unless `was_paused` (paused before, by a pause request: it
// stays paused). A failed or abandoned snapshot leaves nothing in the store. `still_wanted`
// is asked just before the rename: false (the client went away) abandons the snapshot.
Result<SnapshotManifest> create_snapshot(Vm& vm, StorageBackend& storage, SnapshotStore& store,
                                         const SnapshotSource& source,
                                         const control::SnapshotRequest& request, bool was_paused,
                                         const std::function<bool()>& still_wanted,
                                         const LoggerPtr& log);

}  // namespace fcvm
