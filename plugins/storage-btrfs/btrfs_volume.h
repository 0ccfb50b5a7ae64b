// BtrfsVolume: where storage-btrfs keeps its files, and `fcvm setup storage`.
//
// When the data dir is on btrfs, the files live in <data_dir>/storage-btrfs. Otherwise
// `fcvm setup storage` makes a btrfs filesystem in the file
// <data_dir>/storage-btrfs/volume.btrfs, loop-mounts it at <data_dir>/btrfs and records
// both in <data_dir>/storage-btrfs/volume.json (versioned; the data dir is the one place
// every fcvm invocation for this data finds, whichever config file it reads). After a
// reboot the first use mounts it again.
//
// The loop device is autoclear and the mount is the only user, so unmounting the volume
// detaches the device; a process killed half-way leaves no loop device behind.
//
// Threading: any thread. setup() and ready() serialize across processes with an flock on
// <data_dir>/storage-btrfs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "fcvm/log.h"
#include "fcvm/result.h"

namespace fcvm::btrfs {

// The record `fcvm setup storage` writes.
struct VolumeRecord {
  static constexpr int kVersion = 1;
  std::filesystem::path image;        // the file holding the btrfs filesystem
  std::filesystem::path mount_point;  // <data_dir>/btrfs
  std::uint64_t size_mib = 0;
};

class BtrfsVolume {
 public:
  enum class State {
    data_dir_on_btrfs,  // nothing to set up
    mounted,            // set up and mounted
    unmounted,          // set up, not mounted (after a reboot): ready() mounts it
    absent,             // data dir not on btrfs and no volume: run `fcvm setup storage`
  };

  // `volume_mib`: the size setup() gives a new volume (a sparse file: it costs what is used).
  BtrfsVolume(std::filesystem::path data_dir, std::uint64_t volume_mib, LoggerPtr log);

  // What applies on this host, without side effects.
  State state() const;
  // One line for probe(): what applies and, when something is missing, the fix.
  std::string describe(State state) const;

  // The directory for storage-btrfs's files on btrfs, mounting the volume if it is set up
  // but not mounted (needs root). unavailable with the fix when there is no volume.
  Result<std::filesystem::path> ready() const;

  // Creates, mounts and records the volume; a no-op when the data dir is on btrfs or the
  // volume exists (then it only makes sure it is mounted). Needs root: unavailable with
  // the fix otherwise. On failure nothing is left (no file, loop device, mount or record).
  // Returns one line saying what it did.
  Result<std::string> setup() const;

  std::filesystem::path record_path() const { return own_dir_ / "volume.json"; }
  std::filesystem::path image_path() const { return own_dir_ / "volume.btrfs"; }
  std::filesystem::path mount_point() const { return data_dir_ / "btrfs"; }
  // <data_dir>/storage-btrfs: the files' home when the data dir is btrfs, else the
  // volume's record and image.
  const std::filesystem::path& own_dir() const { return own_dir_; }

 private:
  Result<VolumeRecord> read_record() const;
  Status mount_volume(const VolumeRecord& record) const;

  std::filesystem::path data_dir_;
  std::filesystem::path own_dir_;
  std::uint64_t volume_mib_;
  LoggerPtr log_;
};

// statfs(2) f_type of the filesystem holding `path`, named ("ext4", "btrfs", "tmpfs"...).
std::string filesystem_name(const std::filesystem::path& path);
bool is_btrfs(const std::filesystem::path& path);

}  // namespace fcvm::btrfs
