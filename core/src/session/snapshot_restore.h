// SnapshotRestore: a VmOrigin that restores a clone of a snapshot: its own copy of the
// snapshot's disks, a clone of the snapshot's network (same guest address and MAC, its own
// namespace), and the VMM resumed from the snapshot's state and memory. The guest already
// runs its container, so the agent gets no plan.
//
// Used by `snapshot run` (to come); the snapshot manifest supplies the fields below.
#pragma once

#include <optional>

#include "session/vm_session.h"

namespace fcvm {

struct SnapshotRestoreSpec {
  std::string snapshot_name;                   // recorded
  DiskLease disks;                             // the snapshot's disks
  std::optional<NetworkLease> network;         // the snapshot VM's network, if it had one
  SnapshotFiles files;
  MemorySource memory;
  ExecDefaults exec;                           // the snapshot's container process and rootfs
};

class SnapshotRestore final : public VmOrigin {
 public:
  explicit SnapshotRestore(SnapshotRestoreSpec spec) : spec_(std::move(spec)) {}

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

 private:
  SnapshotRestoreSpec spec_;
};

}  // namespace fcvm
