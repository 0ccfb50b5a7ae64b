#include "session/snapshot_restore.h"

#include <time.h>

#include <chrono>

#include "plugin/capability_check.h"

namespace fcvm {
namespace {

// How long a restored guest has to answer ATTACH (TCG restores of a loaded host are slow).
constexpr auto kAttachTimeout = std::chrono::seconds(30);

}  // namespace

Status SnapshotRestore::check(const VmmCapabilities& vmm, const std::string& vmm_name) const {
  BackendChoice choice;
  choice.vmm = vmm_name;
  choice.vmm_capabilities = vmm;
  choice.memory = spec_.memory_plugin;
  return check_capabilities(choice, spec_.memory.kind == MemorySourceKind::file ? VmOperation::restore_file
                                                                                 : VmOperation::restore_uffd);
}

void SnapshotRestore::describe(VmRecord& record) const {
  record.type = spec_.startup ? VmType::vm : VmType::clone;
  if (spec_.startup) record.image = spec_.startup->image;
  record.snapshot = spec_.snapshot_name;
  record.serve = spec_.serve;
}

Status SnapshotRestore::agent_unreachable(Status why) const {
  return error(Errc::protocol, "clone of " + spec_.snapshot_name + ": the restored guest did not answer (" +
                                   why.message() + "): wrong or damaged memory file; refused");
}

std::optional<agent::GoRequest> SnapshotRestore::go(const std::string& hostname) const {
  if (!spec_.startup || !spec_.startup->held) return std::nullopt;
  return agent::GoRequest{hostname};
}

Result<std::string> SnapshotRestore::verify_guest(AgentChannel& agent) {
  // The wall clock at restore is unique per clone and grows across restores of a snapshot:
  // an ATTACHED answering an earlier attach is never taken for this one.
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  const auto generation = static_cast<std::uint64_t>(now.tv_sec) * 1000000000u +
                          static_cast<std::uint64_t>(now.tv_nsec);
  std::optional<std::string> expected;
  if (!spec_.boot_id.empty()) expected = spec_.boot_id;
  auto attached = agent.attach(generation, expected, kAttachTimeout);
  if (!attached) {
    return attached.status().with_context("clone of " + spec_.snapshot_name + " refused: ");
  }
  guest_sessions_ = attached->sessions;
  return attached->boot_id;
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
  if (spec_.memory_backend && spec_.memory.kind == MemorySourceKind::file) {
    const auto placed = layout.dir / "snapshot.mem";
    FCVM_RETURN_IF_ERROR(spec_.memory_backend->place(spec_.memory.path, placed)
                             .with_context("clone of " + spec_.snapshot_name + ": memory: "));
    restore.memory.path = placed;
  }
  restore.resume = true;
  restore.snapshottable = spec_.snapshottable;
  restore.announce_vmm = spec_.announce_vmm;
  return vmm.restore(restore);
}

std::optional<agent::Plan> SnapshotRestore::plan(const std::string&, const DiskLease&,
                                                 const std::optional<NetworkLease>&) const {
  return std::nullopt;
}

}  // namespace fcvm
