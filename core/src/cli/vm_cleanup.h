// Cleaning up after one VM whose fcvm process is gone, for `fcvm gc` and `fcvm rm`.
#pragma once

#include <string>
#include <vector>

#include "cli/command.h"
#include "snapshot/snapshot_store.h"
#include "state/vm_record.h"

namespace fcvm::cli {

struct VmCleanup {
  bool removed = false;              // the record is gone (with everything it held)
  std::vector<std::string> cleaned;  // what was torn down, for the report
  std::string problem;               // why the record stays
};

// Tears down the record's network lease and destroys its disks through the plugins that
// made them, removes its directory, then deletes the record. The record is data: its
// directory must be vms/<id> of the data dir and its disks must pass check_lease_paths,
// else nothing is touched. Stops at the first failing step and says why in `problem`;
// every step is idempotent, so calling again retries. Precondition: the record's process
// is dead.
VmCleanup clean_up_vm(CommandContext& ctx, const VmRecord& record);

// Removes a snapshot: its disks through the storage plugin that made them (which may keep
// them outside the snapshot's directory, as storage-btrfs does), then the directory. A
// failure leaves the snapshot listed, so the removal can be retried.
Status remove_snapshot(CommandContext& ctx, SnapshotStore& store, const StoredSnapshot& snapshot);

}  // namespace fcvm::cli
