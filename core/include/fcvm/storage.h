// StorageBackend: turns an unpacked image into a VM's disks, and snapshots and clones them.
//
// Implementations: storage-squashfs (read-only squashfs base + per-VM ext4 scratch disk
// for an overlay in the guest), storage-btrfs (reflink copy-on-write ext4 disks).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fcvm/plugin.h"
#include "fcvm/result.h"
#include "fcvm/vmm.h"

namespace fcvm {

inline void to_json(nlohmann::json& j, const Drive& d) {
  j = {{"id", d.id}, {"path", d.path}, {"read_only", d.read_only}};
}
inline void from_json(const nlohmann::json& j, Drive& d) {
  d.id = j.at("id").get<std::string>();
  d.path = j.at("path").get<std::string>();
  d.read_only = j.value("read_only", false);
}

// An image's root filesystem, unpacked on the host.
struct ImageRootfs {
  std::string digest;            // manifest digest, "sha256:..."
  std::filesystem::path rootfs;  // directory
};

// A backend's cached form of an image, shared by all VMs of that image.
struct BaseImage {
  std::string digest;
  std::filesystem::path path;
  std::uint64_t bytes = 0;
};

// How the guest agent mounts its root from the drives.
struct RootPlan {
  std::string mode = "direct";  // "direct": one rw disk; "overlay": ro lower + rw upper
  std::string lower_drive;      // Drive::id; for "direct" the root disk
  std::string lower_fstype;     // "squashfs", "ext4"
  std::string upper_drive;      // "overlay" only
  std::string upper_fstype;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(RootPlan, mode, lower_drive, lower_fstype,
                                                upper_drive, upper_fstype)

struct DiskLease {
  std::string plugin;
  std::vector<Drive> drives;  // in the order the VMM attaches them
  RootPlan root;
  nlohmann::json extra = nlohmann::json::object();  // backend-private
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DiskLease, plugin, drives, root, extra)

struct DiskOptions {
  std::uint64_t scratch_mib = 0;  // writable space the container gets; 0: the plugin's default
};

class FCVM_SDK_API StorageBackend : public Backend {
 public:
  PluginKind kind() const final { return PluginKind::storage; }

  // Prepares this host once for the backend (`fcvm setup storage`): creates what probe()
  // reports missing, e.g. a filesystem. Idempotent: a second call only checks. May need
  // root (unavailable, naming the fix, otherwise). On failure nothing is left. Returns one
  // line saying what it did. The default has nothing to do.
  virtual Result<std::string> setup_host() { return std::string("nothing to set up"); }

  // Builds (once per digest) the backend's base from an unpacked rootfs. Idempotent and
  // safe against concurrent callers for the same digest (one builds, others wait); a
  // failed build leaves nothing behind.
  virtual Result<BaseImage> prepare_base(const ImageRootfs& image) = 0;

  // Creates a new VM's disks under `vm_dir`. On failure nothing is left.
  virtual Result<DiskLease> create_disks(const BaseImage& base, const std::filesystem::path& vm_dir,
                                         const DiskOptions& options) = 0;

  // Captures a paused VM's disks into `snapshot_dir` (the VM must not write meanwhile).
  virtual Result<DiskLease> snapshot_disks(const DiskLease& vm,
                                           const std::filesystem::path& snapshot_dir) = 0;

  // Creates a clone's own writable disks under `clone_dir` from a snapshot's, keeping
  // the drive ids, order and file names (a snapshot refers to them by relative layout).
  virtual Result<DiskLease> clone_disks(const DiskLease& snapshot,
                                        const std::filesystem::path& clone_dir) = 0;

  // Deletes what the lease's VM owns (never a shared base). Idempotent.
  virtual Status destroy(const DiskLease& lease) = 0;
};

}  // namespace fcvm
