#include "snapshot/snapshot_builder.h"

#include <chrono>

#include "fcvm/atomic_file.h"
#include "state/vm_record.h"

namespace fcvm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kStateFile = "state";
constexpr const char* kMemoryFile = "mem";
constexpr const char* kStartupOutputFile = "startup-output";

// Resumes the VM when the snapshot is done, whatever happened (unless it was paused before).
class ResumeGuard {
 public:
  ResumeGuard(Vm& vm, const LoggerPtr& log, bool keep_paused) : vm_(vm), log_(log), done_(keep_paused) {}
  ~ResumeGuard() { (void)resume(); }
  ResumeGuard(const ResumeGuard&) = delete;
  ResumeGuard& operator=(const ResumeGuard&) = delete;
  Status resume() {
    if (done_) return ok_status();
    done_ = true;
    Status st = vm_.resume();
    if (!st.ok()) log_->warn("resume after snapshot: " + st.message());
    return st;
  }

 private:
  Vm& vm_;
  const LoggerPtr& log_;
  bool done_;
};

}  // namespace

Result<SnapshotManifest> create_snapshot(Vm& vm, StorageBackend& storage, SnapshotStore& store,
                                         const SnapshotSource& source,
                                         const control::SnapshotRequest& request, bool was_paused,
                                         const std::function<bool()>& still_wanted,
                                         const LoggerPtr& log) {
  auto building = store.begin(request.tag);
  if (!building) return building.status();
  const auto dir = building->path();

  SnapshotManifest m;
  m.tag = request.tag;
  m.created = now_rfc3339();
  m.source_name = source.name;
  m.source_id = source.id;
  m.image = source.image;
  m.disk_only = request.disk_only;
  m.plugins = source.plugins;
  m.vmm_version = source.vmm_version;
  m.machine = source.machine;
  m.network = source.network;
  m.main_process = source.main_process;
  m.rootfs = source.rootfs;
  m.boot_id = source.boot_id;
  m.cache_key = source.cache_key;
  if (source.startup_output) {
    m.cache_healthy = true;
    m.startup_output = kStartupOutputFile;
    FCVM_RETURN_IF_ERROR(write_file_atomic(dir / kStartupOutputFile, *source.startup_output, 0600));
  }

  const auto paused_at = Clock::now();
  if (!was_paused) FCVM_RETURN_IF_ERROR(vm.pause().with_context("snapshot: pause: "));
  ResumeGuard resume(vm, log, was_paused);
  if (!request.disk_only) {
    m.state_file = kStateFile;
    m.memory_file = kMemoryFile;
    FCVM_RETURN_IF_ERROR(vm.snapshot(m.files(dir)));
  }
  auto disks = storage.snapshot_disks(source.disks, dir);
  if (!disks) return disks.status().with_context("snapshot: ");
  FCVM_RETURN_IF_ERROR(resume.resume().with_context("snapshot: "));
  m.pause_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - paused_at).count());

  // Drives inside the snapshot are stored relative to it: the directory is renamed next.
  m.disks = *disks;
  for (auto& d : m.disks.drives) {
    auto rel = d.path.lexically_relative(dir);
    if (!rel.empty() && *rel.begin() != "..") d.path = rel;
  }
  FCVM_RETURN_IF_ERROR(write_snapshot_manifest(dir, m));
  if (still_wanted && !still_wanted()) {
    return error(Errc::io, "snapshot: the client went away; snapshot abandoned");
  }
  FCVM_RETURN_IF_ERROR(store.commit(*building, request.tag));
  log->info("snapshot " + request.tag + " taken; the VM was paused " + std::to_string(m.pause_ms) + " ms");
  return m;
}

}  // namespace fcvm
