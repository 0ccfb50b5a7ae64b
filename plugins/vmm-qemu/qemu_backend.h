// QemuBackend: the vmm-qemu plugin's VmmBackend. Boots QEMU microvm guests and restores
// them from snapshots (migration streams whose guest RAM lives in a separate file).
//
// Threading: launch, restore and probe may run concurrently; the backend holds only its
// immutable configuration.
#pragma once

#include <memory>

#include "accel_choice.h"
#include "fcvm/log.h"
#include "fcvm/vmm.h"
#include "qemu_command_line.h"
#include "qemu_config.h"

namespace fcvm::qemu {

class QemuBackend final : public VmmBackend {
 public:
  // `probe_cache`: where the binary's `-version` output is kept between runs (keyed by the
  // binary's path, size and mtime); empty: asked every time.
  QemuBackend(QemuConfig config, LoggerPtr log, std::filesystem::path probe_cache = {});

  // Available when the QEMU binary runs (its version is in the note) and the chosen
  // accelerator can be used; the note gives the accelerator and why.
  Probe probe() override;
  // Snapshots, file-memory restores and UFFD restores (through the fcvm-uffd-shim preload
  // library, which does Firecracker's side of the handshake); no diff snapshots, no MMDS;
  // the agent on a virtio-serial port.
  VmmCapabilities capabilities() const override;

  Result<std::unique_ptr<Vm>> launch(const VmSpec& spec) override;
  Result<std::unique_ptr<Vm>> restore(const RestoreSpec& spec) override;

  // The accelerator a VM started now would get. Reads /sys/module and opens /dev/kvm.
  AccelChoice accel() const;

  const QemuConfig& config() const { return config_; }

  // The preload library UFFD restores use: config's uffd_shim, else
  // <dir of the plugin directory>/fcvm-uffd-shim.so. Empty when it cannot be located.
  std::filesystem::path uffd_shim() const;

 private:
  QemuHostOptions host_options(Accel accel) const;

  QemuConfig config_;
  LoggerPtr log_;
  std::filesystem::path probe_cache_;
};

}  // namespace fcvm::qemu
