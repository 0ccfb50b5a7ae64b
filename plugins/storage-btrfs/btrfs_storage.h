// BtrfsStorage: every VM boots its own read-write ext4 root disk, a reflink (FICLONE) of
// one ext4 base per image, so a new disk costs no bytes and no copy until the guest writes.
//
// Files, under the volume root R (see btrfs_volume.h: <data_dir>/storage-btrfs when the
// data dir is btrfs, else the loop-mounted <data_dir>/btrfs):
//   R/bases/<digest-hex>.ext4   built once per image digest with `mkfs.ext4 -d`, never
//                               changed; built under an flock on R/bases, as a temp
//                               file renamed into place (a later build deletes the
//                               temp files of builds that were killed)
//   R/disks/<random>/root.ext4  a VM's, snapshot's or clone's disk when its directory is
//                               not on R's filesystem (reflinks cannot cross filesystems);
//                               the directory then holds root.ext4 as a symlink to it
// and otherwise <dir>/root.ext4 itself. The lease's `extra` records the disk it owns.
//
// Threading: methods may be called from any thread, concurrently; base builds serialize
// across processes, and other calls touch only their own VM's files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "btrfs_volume.h"
#include "fcvm/log.h"
#include "fcvm/storage.h"

namespace fcvm::btrfs {

inline constexpr const char* kPluginName = "storage-btrfs";
inline constexpr const char* kRootDrive = "root";
inline constexpr const char* kDiskFile = "root.ext4";

enum class ReflinkPolicy {
  required,  // refuse, naming the fix, where disks cannot be reflinks
  automatic, // "auto": fall back to sparse copies, with a warning
};

struct Options {
  ReflinkPolicy reflink = ReflinkPolicy::required;
  std::uint64_t headroom_mib = 1024;  // free space in a base beyond its files: the guest's room
  std::uint64_t volume_mib = 20480;   // size of the volume `fcvm setup storage` makes (sparse)

  // The plugin's config object: {"reflink": "required"|"auto", "headroom_mib": N,
  // "volume_mib": N}. Unknown keys are an error naming them.
  static Result<Options> from_json(const nlohmann::json& config);
};

class BtrfsStorage final : public StorageBackend {
 public:
  BtrfsStorage(std::filesystem::path data_dir, Options options, LoggerPtr log);

  Probe probe() override;
  Result<std::string> setup_host() override;
  Result<BaseImage> prepare_base(const ImageRootfs& image) override;
  Result<DiskLease> create_disks(const BaseImage& base, const std::filesystem::path& vm_dir,
                                 const DiskOptions& options) override;
  Result<DiskLease> snapshot_disks(const DiskLease& vm,
                                   const std::filesystem::path& snapshot_dir) override;
  Result<DiskLease> clone_disks(const DiskLease& snapshot,
                                const std::filesystem::path& clone_dir) override;
  Status destroy(const DiskLease& lease) override;

  const BtrfsVolume& volume() const { return volume_; }

 private:
  // The directory for bases and disks (see the file comment); under "auto", the data dir's
  // own when no btrfs is available.
  Result<std::filesystem::path> root();
  // A reflink of `from` as `dir`/root.ext4 (see the file comment). Nothing left on failure.
  Result<DiskLease> place_disk(const std::filesystem::path& from, const std::filesystem::path& dir,
                               const std::string& digest, const char* what);
  Result<BaseImage> build_base(const ImageRootfs& image, const std::filesystem::path& out);

  BtrfsVolume volume_;
  Options options_;
  LoggerPtr log_;
};

}  // namespace fcvm::btrfs
