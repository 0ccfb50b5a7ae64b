// The life of a `fcvm snapshot serve` process: it records itself as a serve of a snapshot
// (taking over the record, directory and clones of a dead serve of it where its memory
// backend adopts clients), serves the snapshot's memory to clones (memory-uffd: a page
// server; file: nothing, the VMMs map the image), publishes the server's counters, and on
// every way out stops every clone that depends on it and removes its record and directory.
//
// Threading: serve_snapshot blocks its thread until a stop signal. Errors: Status values.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "fcvm/memory.h"
#include "session/vm_session.h"
#include "snapshot/snapshot_store.h"

namespace fcvm {

struct ServeSpec {
  StoredSnapshot snapshot;  // not disk-only
  std::shared_ptr<MemoryBackend> memory;
  std::string memory_plugin;
  std::optional<std::string> name;  // of the serve's record
  bool prefetch = true;             // MemoryServeOptions::prefetch
};

// Serves until SIGINT, SIGTERM or SIGHUP arrives; the caller blocks them first
// (block_stop_signals) so that they queue for this loop. `on_serving` is called once the
// clones can come, with the page server's socket (empty with file memory).
Status serve_snapshot(const SessionServices& services, const ServeSpec& spec,
                 const std::function<void(const std::filesystem::path& socket)>& on_serving);

// Asks the fcvm process `process` to stop (SIGTERM: a graceful stop of its VM) and waits
// up to `wait` for it to be gone. True when it is.
bool stop_process(const ProcessIdentity& process, std::chrono::milliseconds wait);

}  // namespace fcvm
