#include "snapshot/snapshot_builder.h"

#include <chrono>

#include "state/vm_record.h"

namespace fcvm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kStateFile = "state";
constexpr const char* kMemoryFile = "mem";

// Resumes the VM when the snapshot is done, whatever happened.
class ResumeGuard {
 public:
  explicit ResumeGuard(Vm& vm, const LoggerPtr& log) : vm_(vm), log_(log) {}
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
  bool done_ = false;
};

}  // namespace

nlohmann::json to_json(const SnapshotRequest& r) {
  return {{"version", 1}, {"tag", r.tag}, {"disk_only", r.disk_only}};
}

Result<SnapshotRequest> parse_snapshot_request(const std::string& line) {
  auto doc = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || doc.value("version", 0) != 1 || !doc.contains("tag") ||
      !doc["tag"].is_string()) {
    return error(Errc::invalid_argument, "snapshot request: expected {\"version\":1,\"tag\":...}");
  }
  SnapshotRequest r;
  r.tag = doc["tag"].get<std::string>();
  if (auto it = doc.find("disk_only"); it != doc.end()) {
    if (!it->is_boolean()) return error(Errc::invalid_argument, "snapshot request: disk_only must be a boolean");
    r.disk_only = it->get<bool>();
  }
  FCVM_RETURN_IF_ERROR(SnapshotStore::validate_tag(r.tag));
  return r;
}

Result<SnapshotManifest> create_snapshot(Vm& vm, StorageBackend& storage, SnapshotStore& store,
                                         const SnapshotSource& source,
                                         const SnapshotRequest& request,
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

  const auto paused_at = Clock::now();
  FCVM_RETURN_IF_ERROR(vm.pause().with_context("snapshot: pause: "));
  ResumeGuard resume(vm, log);
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
