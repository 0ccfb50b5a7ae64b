// FirecrackerBackend: the vmm-firecracker plugin's VmmBackend. Boots guests under
// Firecracker through its API socket and restores them from Firecracker snapshots with
// File or UFFD memory.
//
// Threading: launch, restore, probe and capabilities may run concurrently; the backend
// holds only its immutable configuration.
#pragma once

#include <memory>

#include "fcvm/log.h"
#include "fcvm/vmm.h"
#include "firecracker_config.h"

namespace fcvm::firecracker {

class FirecrackerBackend final : public VmmBackend {
 public:
  FirecrackerBackend(FirecrackerConfig config, LoggerPtr log);

  // Available when the binary runs, its version is supported and the host has hardware
  // KVM; the note gives the version and whether UFFD restores work. Unavailable names the
  // missing piece and its fix.
  Probe probe() override;

  // Starts Firecracker (working directory: spec.dir) and configures and starts the guest
  // (FirecrackerRequests::boot). Launch does not re-check KVM: Firecracker's own error
  // on a host without it is quoted.
  Result<std::unique_ptr<Vm>> launch(const VmSpec& spec) override;
  // Starts Firecracker in spec.vm.dir and loads the snapshot. Drives the snapshot names by
  // relative path are opened relative to spec.vm.dir, so the clone's directory must have
  // the snapshot source's layout (StorageBackend::clone_disks keeps it).
  Result<std::unique_ptr<Vm>> restore(const RestoreSpec& spec) override;
  // Everything: snapshot, File and UFFD restores, dirty page tracking (Diff), MMDS, vsock
  // agent channel. Constant; whether this host has /dev/userfaultfd for UFFD restores is in
  // probe()'s note and in restore()'s error.
  VmmCapabilities capabilities() const override;

 private:
  FirecrackerConfig config_;
  LoggerPtr log_;
};

}  // namespace fcvm::firecracker
