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
  return make_backend<QemuBackend>(std::move(*config), context.log,
                                   context.data_dir / "vmm-qemu" / "probes");
}

}  // namespace
}  // namespace fcvm::qemu

FCVM_DECLARE_PLUGIN(fcvm::PluginKind::vmm, "vmm-qemu", "0.1.0",
                    "QEMU microvm guests over QMP, with snapshot and copy-on-write restore",
                    &fcvm::qemu::create_backend)
