// SnapshotStore: the snapshots under <data_dir>/snapshots/<tag>/ (0700), each a directory
// with manifest.json, the VMM's state and memory files and the storage plugin's disks.
//
// A snapshot is built in a temp directory beside the others (".creating-<tag>-XXXXXX",
// flocked by its builder) and renamed into place whole, so a reader sees a complete
// snapshot or none; a builder killed at any point leaves only a temp directory, which
// list() never shows and sweep_stale() removes once no live process holds it.
//
// Thread-safe (no state beyond the directory); any number of processes may share it.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "fcvm/result.h"
#include "fcvm/storage.h"
#include "fcvm/temp_dir.h"
#include "snapshot/snapshot_manifest.h"

namespace fcvm {

class StateStore;

struct StoredSnapshot {
  std::filesystem::path dir;
  SnapshotManifest manifest;
};

class SnapshotStore {
 public:
  explicit SnapshotStore(const std::filesystem::path& data_dir);

  // <data_dir>/snapshots
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path dir_of(std::string_view tag) const { return dir_ / std::string(tag); }

  // Tags follow VM names' rules ([a-z0-9][a-z0-9_.-]{0,62}); the error says what is allowed.
  static Status validate_tag(std::string_view tag);

  // A new temp directory for building snapshot `tag`. already_exists when the tag is taken.
  Result<TempDir> begin(std::string_view tag);
  // Renames the finished `building` directory to the tag's place (never over an existing
  // snapshot: already_exists) and fsyncs the parent. On success `building` no longer owns
  // a directory.
  Status commit(TempDir& building, std::string_view tag);

  // The snapshot `tag`; not_found naming `fcvm snapshot ls`.
  Result<StoredSnapshot> get(std::string_view tag) const;
  // Every complete snapshot, by tag. Unreadable manifests are skipped with no error: a
  // snapshot another fcvm version wrote must not hide the others.
  std::vector<StoredSnapshot> list() const;
  // Deletes snapshot `tag`. Clones keep running: their memory is a hardlink and their disks
  // are their own copies. not_found when absent.
  Status remove(std::string_view tag);
  // Destroys `snap`'s disks through `storage` once its manifest's drives pass
  // check_lease_paths (a manifest is data: it could name any file); invalid_argument,
  // touching nothing, when they do not.
  Status destroy_disks(const StoredSnapshot& snap, StorageBackend& storage) const;
  // Removes temp directories of builders that died.
  void sweep_stale() const;

 private:
  std::filesystem::path dir_;
};

}  // namespace fcvm
