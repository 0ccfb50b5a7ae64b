// The vmm-firecracker plugin's descriptor and factory.
#include <memory>

#include "fcvm/plugin.h"
#include "fcvm/vmm.h"
#include "firecracker_backend.h"
#include "firecracker_config.h"

namespace fcvm::firecracker {
namespace {

Result<std::unique_ptr<Backend>> create_backend(const PluginContext& context) {
  auto config = FirecrackerConfig::parse(context.config);
  if (!config) return config.status().with_context("vmm-firecracker: ");
  return make_backend<FirecrackerBackend>(std::move(*config), context.log);
}

}  // namespace
}  // namespace fcvm::firecracker

FCVM_DECLARE_PLUGIN(fcvm::PluginKind::vmm, "vmm-firecracker", "0.1.0",
                    "Firecracker microVMs over its API socket: vsock agent channel, MMDS, File and UFFD restores",
                    &fcvm::firecracker::create_backend)
