// Cleaning up after one VM whose fcvm process is gone (Engine::remove and gc), and removing
// a snapshot.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fcvm/plugin.h"
#include "fcvm/result.h"
#include "snapshot/snapshot_store.h"
#include "state/vm_record.h"

namespace fcvm {

class StateStore;

// Creates a backend of plugin `name`, which must be of `kind`.
using BackendLoader = std::function<Result<std::shared_ptr<Backend>>(const std::string& name, PluginKind kind)>;

struct VmCleanup {
  std::string name;                  // the VM's
  bool removed = false;              // the record is gone (with everything it held)
  std::vector<std::string> cleaned;  // what was torn down, for the report
  std::string problem;               // why the record stays
};

// Tears down the record's network lease and destroys its disks through the plugins that
// made them, removes its directory, then deletes the record. The record is data: its
// directory must be vms/<id> of `data_dir` and its disks must pass check_lease_paths,
// else nothing is touched. Stops at the first failing step and says why in `problem`;
// every step is idempotent, so calling again retries. Precondition: the record's process
// is dead.
VmCleanup clean_up_vm(const std::filesystem::path& data_dir, StateStore& state, const BackendLoader& load,
                      const VmRecord& record);

// Removes a snapshot: its disks through the storage plugin that made them (which may keep
// them outside the snapshot's directory, as storage-btrfs does), then the directory. A
// failure leaves the snapshot listed, so the removal can be retried.
Status remove_snapshot(SnapshotStore& store, const BackendLoader& load, const StoredSnapshot& snapshot);

}  // namespace fcvm
