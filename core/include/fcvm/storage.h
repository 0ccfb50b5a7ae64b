// StorageBackend: turns an unpacked image into a VM's disks, and snapshots and clones them.
//
// Implementations: storage-squashfs (read-only squashfs base + per-VM ext4 scratch disk
// for an overlay in the guest), storage-btrfs (reflink copy-on-write ext4 disks).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
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

// "sha256:<64 lowercase hex>" -> the hex, safe as a file name; anything else -> empty.
inline std::string digest_hex(std::string_view digest) {
  constexpr std::string_view kAlgo = "sha256:";
  if (digest.substr(0, kAlgo.size()) != kAlgo) return {};
  const std::string_view hex = digest.substr(kAlgo.size());
  if (hex.size() != 64) return {};
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return {};
  }
  return std::string(hex);
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
  enum class Mode {
    direct,   // one writable disk: lower_drive
    overlay,  // read-only lower_drive under a writable upper_drive
  };
  Mode mode = Mode::direct;  // JSON: "direct" | "overlay"; anything else is refused
  std::string lower_drive;   // Drive::id; for direct the root disk
  std::string lower_fstype;  // "squashfs", "ext4"
  std::string upper_drive;   // overlay only
  std::string upper_fstype;
};

inline void to_json(nlohmann::json& j, RootPlan::Mode mode) {
  j = mode == RootPlan::Mode::overlay ? "overlay" : "direct";
}
inline void from_json(const nlohmann::json& j, RootPlan::Mode& mode) {
  if (j == "direct") {
    mode = RootPlan::Mode::direct;
  } else if (j == "overlay") {
    mode = RootPlan::Mode::overlay;
  } else {
    throw nlohmann::json::other_error::create(
        501, "root mode must be \"direct\" or \"overlay\", not " + j.dump(), &j);
  }
}
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

// Common to every method: thread-safe (calls for different VMs may run concurrently; calls
// for one VM come from one thread); never throws (failures are Status values whose message
// names the file and the fix); nothing blocks on the network; time is bounded by the disk
// work itself (copying or formatting at most the image and the requested scratch size).
// A lease's `plugin` is the backend's name; a backend refuses (invalid_argument) a lease
// another backend made. Files a backend creates are 0600, directories 0700.
class FCVM_SDK_API StorageBackend : public Backend {
 public:
  PluginKind kind() const final { return PluginKind::storage; }

  // Prepares this host once for the backend (`fcvm setup storage`): creates what probe()
  // reports missing, e.g. a filesystem. Idempotent: a second call only checks. May need
  // root (unavailable, naming the fix, otherwise). On failure nothing is left. Returns one
  // line saying what it did. The default has nothing to do.
  virtual Result<std::string> setup_host() { return std::string("nothing to set up"); }

  // Builds (once per digest) the backend's base from an unpacked rootfs. Idempotent and
  // safe against concurrent callers for the same digest, across processes too (one builds,
  // others wait, without a time bound, for it); a failed build leaves nothing behind. The
  // base is shared and owned by the backend, never by a VM.
  virtual Result<BaseImage> prepare_base(const ImageRootfs& image) = 0;

  // Creates a new VM's disks under `vm_dir` (created if missing). The caller owns the
  // result: it must persist the lease before using the disks and call destroy() once done.
  // On failure nothing is left (not even `vm_dir`, when this call created it).
  virtual Result<DiskLease> create_disks(const BaseImage& base, const std::filesystem::path& vm_dir,
                                         const DiskOptions& options) = 0;

  // Captures a paused VM's disks into `snapshot_dir` (the VM must not write meanwhile; the
  // caller guarantees it). The snapshot's lease is the caller's, like create_disks'. On
  // failure nothing is left in `snapshot_dir` and the VM's disks are untouched.
  virtual Result<DiskLease> snapshot_disks(const DiskLease& vm,
                                           const std::filesystem::path& snapshot_dir) = 0;

  // Creates a clone's own writable disks under `clone_dir` from a snapshot's, keeping
  // the drive ids, order and file names (a snapshot refers to them by relative layout).
  // Fails with already_exists when the clone's files exist. On failure nothing is left.
  virtual Result<DiskLease> clone_disks(const DiskLease& snapshot,
                                        const std::filesystem::path& clone_dir) = 0;

  // Deletes what the lease's VM owns (never a shared base). Idempotent: parts already gone
  // are not errors, so it may run twice, after a crash or from `fcvm gc` in another process.
  virtual Status destroy(const DiskLease& lease) = 0;
};

}  // namespace fcvm
