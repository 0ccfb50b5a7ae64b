// The origin of a clone of a snapshot (`fcvm snapshot run`): a restore of its VMM state and
// memory, or, for a disk-only snapshot, a cold boot of copies of its disks. The CLI (or any
// other caller) finds the snapshot and the serve process; this decides what a clone is.
//
// Threading: plain functions. Errors: Result values, nothing throws.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "fcvm/log.h"
#include "fcvm/memory.h"
#include "session/vm_session.h"
#include "snapshot/snapshot_store.h"
#include "state/process_identity.h"

namespace fcvm {

// Where a clone's memory comes from.
struct CloneMemory {
  // A running page server (`snapshot serve --memory memory-uffd`), as its record names it.
  struct PageServer {
    std::filesystem::path memory_socket;   // the VMMs' UFFD handshake
    std::filesystem::path control_socket;  // announcements of the VMMs (serve_control.h)
    std::string plugin;                    // its memory plugin
  };
  std::optional<PageServer> page_server;
  // Without a page server: the backend that places the snapshot's image in the clone's
  // directory (the built-in file backend), and its name.
  std::shared_ptr<MemoryBackend> backend;
  std::string plugin;
};

struct CloneSpec {
  StoredSnapshot snapshot;
  CloneMemory memory;
  std::optional<ProcessIdentity> serve;  // the serve process the clone depends on
  // Disk-only snapshots: the kernel to boot (else the snapshot's, else `fcvm setup`'s).
  std::optional<std::filesystem::path> kernel;
  std::filesystem::path data_dir;  // where `fcvm setup` keeps the guest assets
  LoggerPtr log;
};

// Refuses, before anything is created, backends that cannot clone `manifest`: a startup
// snapshot (`fcvm podman run` restores those), plugins other than those it was taken with
// (invalid_argument, naming the --plugin to pass), a VMM plugin of another version than the
// one that wrote its state (unavailable: take a new snapshot).
Status check_clone_backends(const SnapshotManifest& manifest, const SessionBackends& backends);

// The origin of one clone of `spec.snapshot`.
Result<std::unique_ptr<VmOrigin>> clone_origin(const CloneSpec& spec);

}  // namespace fcvm
