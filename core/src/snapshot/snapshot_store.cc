#include "snapshot/snapshot_store.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include <algorithm>

#include "fcvm/atomic_file.h"
#include "state/lease_paths.h"
#include "state/vm_record.h"

namespace fcvm {
namespace {

constexpr std::string_view kBuildingPrefix = ".creating-";

}  // namespace

SnapshotStore::SnapshotStore(const std::filesystem::path& data_dir)
    : dir_(data_dir / "snapshots") {}

Status SnapshotStore::validate_tag(std::string_view tag) {
  if (validate_vm_name(tag).ok()) return ok_status();
  return error(Errc::invalid_argument, "bad snapshot tag '" + std::string(tag) +
                                           "': use [a-z0-9][a-z0-9_.-], at most 63 characters");
}

Result<TempDir> SnapshotStore::begin(std::string_view tag) {
  FCVM_RETURN_IF_ERROR(validate_tag(tag));
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return error(Errc::io, "create " + dir_.string() + ": " + ec.message());
  ::chmod(dir_.c_str(), 0700);
  sweep_stale();
  if (std::filesystem::exists(dir_of(tag))) {
    return error(Errc::already_exists, "snapshot '" + std::string(tag) +
                                           "' exists; pick another --tag or 'fcvm snapshot rm " +
                                           std::string(tag) + "'");
  }
  return TempDir::create(dir_, std::string(kBuildingPrefix) + std::string(tag) + "-");
}

Status SnapshotStore::commit(TempDir& building, std::string_view tag) {
  const auto dest = dir_of(tag);
  if (::renameat2(AT_FDCWD, building.path().c_str(), AT_FDCWD, dest.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) {
      return error(Errc::already_exists, "snapshot '" + std::string(tag) + "' appeared meanwhile");
    }
    return errno_status("rename " + building.path().string() + " to " + dest.string());
  }
  // The directory moved: `building` must not delete it, only drop its lock.
  TempDir moved = std::move(building);
  (void)moved;  // its path no longer exists; removing it is a no-op
  return fsync_dir(dir_);
}

Result<StoredSnapshot> SnapshotStore::get(std::string_view tag) const {
  FCVM_RETURN_IF_ERROR(validate_tag(tag));
  const auto dir = dir_of(tag);
  if (!std::filesystem::is_directory(dir)) {
    return error(Errc::not_found, "no snapshot '" + std::string(tag) + "' (see 'fcvm snapshot ls')");
  }
  auto manifest = read_snapshot_manifest(dir);
  if (!manifest) return manifest.status();
  return StoredSnapshot{dir, std::move(*manifest)};
}

std::vector<StoredSnapshot> SnapshotStore::list() const {
  std::vector<StoredSnapshot> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (!validate_tag(name).ok() || !entry.is_directory()) continue;
    if (auto m = read_snapshot_manifest(entry.path())) out.push_back({entry.path(), std::move(*m)});
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.manifest.tag < b.manifest.tag; });
  return out;
}

Status SnapshotStore::remove(std::string_view tag) {
  auto snap = get(tag);
  if (!snap) return snap.status();
  // Rename first, so the snapshot disappears at once and a half-deleted one is never seen.
  auto doomed = TempDir::create(dir_, ".removing-");
  if (!doomed) return doomed.status();
  const auto target = doomed->path() / "snapshot";
  if (::rename(snap->dir.c_str(), target.c_str()) != 0) {
    return errno_status("rename " + snap->dir.string());
  }
  doomed->remove();
  return ok_status();
}

Status SnapshotStore::destroy_disks(const StoredSnapshot& snap, StorageBackend& storage) const {
  const DiskLease disks = snap.manifest.disks_in(snap.dir);
  FCVM_RETURN_IF_ERROR(check_lease_paths(dir_.parent_path(), snap.dir, disks)
                           .with_context("its manifest names a disk that is not its own: "));
  return storage.destroy(disks);
}

void SnapshotStore::sweep_stale() const {
  TempDir::remove_stale(dir_, kBuildingPrefix);
  TempDir::remove_stale(dir_, ".removing-");
}

}  // namespace fcvm
