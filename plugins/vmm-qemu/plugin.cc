// The vmm-qemu plugin's descriptor and factory.
#include <cstdlib>
#include <memory>

#include "fcvm/plugin.h"
#include "fcvm/vmm.h"
#include "qemu_backend.h"
#include "qemu_config.h"

namespace fcvm::qemu {
namespace {

Result<std::unique_ptr<Backend>> create_backend(const PluginContext& context) {
  auto config = QemuConfig::parse(context.config, std::getenv("FCVM_QEMU_ACCEL"));
  if (!config) return config.status().with_context("vmm-qemu: ");
  return std::unique_ptr<Backend>(std::make_unique<QemuBackend>(std::move(*config), context.log,
                                                                context.data_dir / "vmm-qemu" / "probes"));
}

}  // namespace

const PluginDescriptor vmm_qemu_descriptor = {
    FCVM_PLUGIN_DESCRIPTOR_HEAD,
    PluginKind::vmm,
    "vmm-qemu",
    "0.1.0",
    "QEMU microvm guests over QMP, with snapshot and copy-on-write restore",
    &create_backend,
};

}  // namespace fcvm::qemu

FCVM_PLUGIN(fcvm::qemu::vmm_qemu_descriptor)
