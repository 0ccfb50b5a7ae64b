#include "session/snapshot_restore.h"

#include <chrono>

namespace fcvm {
namespace {

constexpr std::uint32_t kVerifySession = 0x7fffffff;
constexpr auto kVerifyTimeout = std::chrono::seconds(30);

}  // namespace

Status SnapshotRestore::check(const VmmCapabilities& vmm, const std::string& vmm_name) const {
  const bool file = spec_.memory.kind == MemorySourceKind::file;
  if (file ? vmm.restore_file_memory : vmm.restore_uffd_memory) return ok_status();
  return error(Errc::unavailable,
               vmm_name + " cannot restore with " + (file ? "file" : "uffd") +
                   " memory; choose the other memory backend (--plugin memory=" +
                   (file ? "memory-uffd" : "file") + ") or another VMM (--vmm)");
}

void SnapshotRestore::describe(VmRecord& record) const {
  record.type = VmType::clone;
  record.snapshot = spec_.snapshot_name;
  record.serve = spec_.serve;
}

Status SnapshotRestore::agent_unreachable(Status why) const {
  return error(Errc::protocol, "clone of " + spec_.snapshot_name + ": the restored guest did not answer (" +
                                   why.message() + "): wrong or damaged memory file; refused");
}

Status SnapshotRestore::verify_guest(AgentChannel& agent) {
  if (spec_.boot_id.empty()) return ok_status();
  agent::Process p = spec_.exec.main_process;
  p.args = {"cat", "/proc/sys/kernel/random/boot_id"};
  p.stdin = false;
  FCVM_RETURN_IF_ERROR(agent.send_exec(kVerifySession, p));
  const auto deadline = std::chrono::steady_clock::now() + kVerifyTimeout;
  std::string out;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto frame = agent.next_frame(left);
    if (!frame) {
      return error(Errc::protocol, "clone of " + spec_.snapshot_name +
                                       ": the restored guest did not answer (" +
                                       frame.status().message() +
                                       "): wrong or damaged memory file; refused");
    }
    if (frame->type == agent::FrameType::kHello) {
      return error(Errc::protocol, "clone of " + spec_.snapshot_name +
                                       ": the guest booted afresh instead of continuing the "
                                       "snapshot (wrong or damaged memory file); refused");
    }
    if (frame->session != kVerifySession) continue;
    if (frame->type == agent::FrameType::kStdout) out += frame->payload;
    if (frame->type != agent::FrameType::kExit) continue;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    if (out != spec_.boot_id) {
      return error(Errc::protocol, "clone of " + spec_.snapshot_name + ": the guest's boot id is '" +
                                       out.substr(0, 64) + "', not the snapshot's " + spec_.boot_id +
                                       " (wrong memory file); refused");
    }
    return ok_status();
  }
  return error(Errc::timeout, "clone of " + spec_.snapshot_name +
                                  ": the guest did not report its boot id within 30 s; refused");
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
  return vmm.restore(restore);
}

std::optional<agent::Plan> SnapshotRestore::plan(const std::string&, const DiskLease&,
                                                 const std::optional<NetworkLease>&) const {
  return std::nullopt;
}

}  // namespace fcvm
