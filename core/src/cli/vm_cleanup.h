// Cleaning up after one VM whose fcvm process is gone, for `fcvm gc` and `fcvm rm`.
#pragma once

#include <string>
#include <vector>

#include "cli/command.h"
#include "state/vm_record.h"

namespace fcvm::cli {

struct VmCleanup {
  bool removed = false;              // the record is gone (with everything it held)
  std::vector<std::string> cleaned;  // what was torn down, for the report
  std::string problem;               // why the record stays
};

// Tears down the record's network lease and destroys its disks through the plugins that
// made them, removes its directory (never anything outside the data dir), then deletes the
// record. Stops at the first failing step and says why in `problem`; every step is
// idempotent, so calling again retries. Precondition: the record's process is dead.
VmCleanup clean_up_vm(CommandContext& ctx, const VmRecord& record);

}  // namespace fcvm::cli
