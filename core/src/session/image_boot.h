// ImageBoot: a VmOrigin that boots a fresh guest from an image: disks from the image's
// rootfs (or a copy of a disk-only snapshot's disks: a clone that cold-boots), a new
// network, the guest kernel and initramfs, and a plan that starts the container's process.
#pragma once

#include "session/guest_assets.h"
#include "session/vm_session.h"

namespace fcvm {

struct ImageBootSpec {
  std::string image_ref;  // as the user named it; recorded
  ImageRootfs rootfs;     // the unpacked image
  GuestAssets assets;     // kernel and initramfs
  unsigned vcpus = 1;
  unsigned memory_mib = 256;
  agent::Process process;  // the container's process, resolved against the image
  bool read_only = false;  // --read-only: the guest's root mount is read-only
  // A disk-only snapshot to boot from instead of the image: the VM gets its own copy of
  // these disks and is recorded as a clone of `snapshot_name`.
  std::optional<DiskLease> snapshot_disks;
  std::string snapshot_name;
};

class ImageBoot final : public VmOrigin {
 public:
  explicit ImageBoot(ImageBootSpec spec) : spec_(std::move(spec)) {}

  Status check(const VmmCapabilities& vmm, const std::string& vmm_name) const override;
  void describe(VmRecord& record) const override;
  Result<DiskLease> create_disks(StorageBackend& storage,
                                 const std::filesystem::path& vm_dir) override;
  Result<NetworkLease> create_network(NetworkBackend& network,
                                      const NetworkRequest& request) override;
  Result<std::unique_ptr<Vm>> start(VmmBackend& vmm, const VmSpec& layout) override;
  std::optional<agent::Plan> plan(const std::string& hostname, const DiskLease& disks,
                                  const std::optional<NetworkLease>& network) const override;
  ExecDefaults exec_defaults() const override;
  GuestMachine machine() const override;

 private:
  ImageBootSpec spec_;
};

}  // namespace fcvm
