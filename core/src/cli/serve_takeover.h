// A `fcvm snapshot serve` with a memory server that adopts clients (memory-uffd) takes over
// from a dead serve of the same snapshot: its record and directory (where the page server
// keeps its clients' records), the VMMs it served, and its clones' records.
#pragma once

#include <optional>
#include <string>

#include "cli/command.h"
#include "fcvm/memory.h"
#include "state/vm_record.h"

namespace fcvm::cli {

struct TakenOverServe {
  VmRecord record;           // rewritten as this process's (status creating)
  ProcessIdentity previous;  // the dead serve process
};

// Under the collection lock (so `fcvm gc` does not remove the directory meanwhile): the
// first record of a dead serve of `tag` that used memory plugin `memory` and still has its
// directory is rewritten to name this process, as `name` when given. nullopt when there is
// none.
std::optional<TakenOverServe> take_over_dead_serve(CommandContext& ctx, const std::string& tag,
                                                   const std::string& memory,
                                                   const std::optional<std::string>& name);

// Adopts every VMM recorded in the server's state dir and points the records of the clones
// whose VMM was adopted at this process. Clones not adopted keep naming the dead serve, so
// `fcvm gc` stops them. Returns how many clones were adopted; failures are logged.
int adopt_clones(CommandContext& ctx, MemoryServer& server, const ProcessIdentity& previous);

}  // namespace fcvm::cli
