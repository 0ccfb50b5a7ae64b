// SnapshotRestore: a VmOrigin that restores a clone of a snapshot: its own copy of the
// snapshot's disks, a clone of the snapshot's network (same guest address and MAC, its own
// namespace), and the VMM resumed from the snapshot's state and memory. The guest already
// runs its container (or holds at its startup barrier, for a cached start), so the agent
// gets no plan.
//
// Built by session/clone_origin.h for `fcvm snapshot run` and by `fcvm podman run`'s cached
// starts; the snapshot manifest supplies the fields below.
#pragma once

#include <functional>
#include <optional>

#include "fcvm/memory.h"
#include "session/vm_session.h"

namespace fcvm {

struct SnapshotRestoreSpec {
  std::string snapshot_name;                   // recorded
  DiskLease disks;                             // the snapshot's disks
  std::optional<NetworkLease> network;         // the snapshot VM's network, if it had one
  SnapshotFiles files;
  MemorySource memory;
  // When set (and memory is a file), the clone gets its own name for the memory image in
  // its directory (a hardlink: the snapshot can be removed while the clone runs).
  std::shared_ptr<MemoryBackend> memory_backend;
  std::string memory_plugin;                   // for the capability check's message
  // uffd memory: tells the page server the VMM's pid before it connects (RestoreSpec).
  std::function<Status(pid_t)> announce_vmm;
  ExecDefaults exec;                           // the snapshot's container process and rootfs
  std::optional<ProcessIdentity> serve;        // the serve process the clone depends on
  // The guest's boot id at snapshot time; empty: not known (the clone is not checked).
  std::string boot_id;
  GuestMachine machine;  // the snapshot's, passed on to snapshots of the clone
  bool snapshottable = false;  // RestoreSpec::snapshottable
  // A startup snapshot (session/startup_cache.h): the VM is recorded as a VM of `image`
  // restored from the snapshot. `held`: the guest holds at its startup barrier and is
  // started with GO after the attach. Otherwise its container runs already (an entry taken
  // once healthy, which keeps the first run's hostname) and `replay` is what it had sent.
  struct Startup {
    std::string image;
    bool held = true;
    std::vector<OutputChunk> replay;
  };
  std::optional<Startup> startup;
};

class SnapshotRestore final : public VmOrigin {
 public:
  explicit SnapshotRestore(SnapshotRestoreSpec spec) : spec_(std::move(spec)) {}

  Status check(const VmmCapabilities& vmm, const std::string& vmm_name) const override;
  void describe(VmRecord& record) const override;
  Result<DiskLease> create_disks(StorageBackend& storage,
                                 const std::filesystem::path& vm_dir) override;
  // invalid_argument when the snapshot VM had no network: a clone cannot gain a NIC.
  Result<NetworkLease> create_network(NetworkBackend& network,
                                      const NetworkRequest& request) override;
  Result<std::unique_ptr<Vm>> start(VmmBackend& vmm, const VmSpec& layout) override;
  std::optional<agent::Plan> plan(const std::string& hostname, const DiskLease& disks,
                                  const std::optional<NetworkLease>& network) const override;
  ExecDefaults exec_defaults() const override { return spec_.exec; }
  GuestMachine machine() const override { return spec_.machine; }
  std::optional<agent::GoRequest> go(const std::string& hostname) const override;
  std::vector<OutputChunk> replayed_output() const override {
    return spec_.startup ? spec_.startup->replay : std::vector<OutputChunk>{};
  }
  // The restore-aware attach (agent_channel.h): the guest answers ATTACH with its boot id,
  // then steps its clock, reseeds its RNG and flushes its neighbour table. A boot id other
  // than the snapshot's (a guest that booted afresh: wrong memory) is a protocol error.
  Result<std::string> verify_guest(AgentChannel& agent) override;
  std::vector<std::uint32_t> guest_sessions() const override { return guest_sessions_; }
  // A restored guest that never answers did not get the snapshot's memory: refused.
  Status agent_unreachable(Status why) const override;

 private:
  SnapshotRestoreSpec spec_;
  std::vector<std::uint32_t> guest_sessions_;  // from ATTACHED
};

}  // namespace fcvm
