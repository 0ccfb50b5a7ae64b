#include "session/snapshot_restore.h"

namespace fcvm {

void SnapshotRestore::describe(VmRecord& record) const {
  record.type = VmType::clone;
  record.snapshot = spec_.snapshot_name;
}

Result<DiskLease> SnapshotRestore::create_disks(StorageBackend& storage,
                                                const std::filesystem::path& vm_dir) {
  return storage.clone_disks(spec_.disks, vm_dir);
}

Result<NetworkLease> SnapshotRestore::create_network(NetworkBackend& network,
                                                     const NetworkRequest& request) {
  if (!spec_.network) {
    return error(Errc::invalid_argument, "snapshot " + spec_.snapshot_name +
                                             " was taken without a network; run its clones "
                                             "without --network");
  }
  return network.setup_clone(*spec_.network, request);
}

Result<std::unique_ptr<Vm>> SnapshotRestore::start(VmmBackend& vmm, const VmSpec& layout) {
  RestoreSpec restore;
  restore.vm = layout;
  restore.snapshot = spec_.files;
  restore.memory = spec_.memory;
  restore.resume = true;
  return vmm.restore(restore);
}

std::optional<agent::Plan> SnapshotRestore::plan(const std::string&, const DiskLease&,
                                                 const std::optional<NetworkLease>&) const {
  return std::nullopt;
}

}  // namespace fcvm
