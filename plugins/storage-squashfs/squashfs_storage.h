// SquashfsStorage: an image becomes one read-only squashfs base, shared by every VM of that
// image; each VM gets a private sparse ext4 scratch disk that the guest agent mounts as
// the upper layer of an overlay over the base.
//
// Files, under the plugin's dir (<data_dir>/storage-squashfs):
//   bases/<digest-hex>/rootfs.sqfs   built once per image digest, never changed
//   bases/<digest-hex>/.lock         present only while a build of that digest runs
// and per VM, under the dir the caller names: scratch.ext4.
//
// Threading: methods may be called from any thread, concurrently; builds of one digest
// are serialized across threads and processes by a lock file, and other calls touch only
// their own VM's files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fcvm/log.h"
#include "fcvm/storage.h"

namespace fcvm::squashfs {

inline constexpr const char* kPluginName = "storage-squashfs";
inline constexpr const char* kRootDrive = "root";
inline constexpr const char* kScratchDrive = "scratch";
inline constexpr const char* kScratchFile = "scratch.ext4";

struct Options {
  // Scratch disk size when the caller's DiskOptions::scratch_mib is 0.
  std::uint64_t scratch_mib = 1024;

  // The plugin's config object: {"scratch_mib": N}. Unknown keys are an error naming them.
  static Result<Options> from_json(const nlohmann::json& config);
};

class SquashfsStorage final : public StorageBackend {
 public:
  // `dir` holds the plugin's files (created on first use).
  SquashfsStorage(std::filesystem::path dir, Options options, LoggerPtr log);

  Probe probe() override;
  Result<BaseImage> prepare_base(const ImageRootfs& image) override;
  Result<DiskLease> create_disks(const BaseImage& base, const std::filesystem::path& vm_dir,
                                 const DiskOptions& options) override;
  Result<DiskLease> snapshot_disks(const DiskLease& vm,
                                   const std::filesystem::path& snapshot_dir) override;
  Result<DiskLease> clone_disks(const DiskLease& snapshot,
                                const std::filesystem::path& clone_dir) override;
  Status destroy(const DiskLease& lease) override;

  std::filesystem::path base_path(const std::string& digest_hex) const;

 private:
  // Copies a lease's scratch disk into `dir` (same file name); the base is shared.
  Result<DiskLease> copy_scratch(const DiskLease& lease, const std::filesystem::path& dir,
                                 const char* what);
  Result<BaseImage> build_base(const ImageRootfs& image, const std::string& hex);

  std::filesystem::path dir_;
  Options options_;
  LoggerPtr log_;
};

}  // namespace fcvm::squashfs
