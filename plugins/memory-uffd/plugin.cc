// The memory-uffd plugin's descriptor and factory.
#include "fcvm/plugin.h"

#include <memory>

#include "uffd_memory.h"

namespace fcvm::uffd {
namespace {

Result<std::unique_ptr<Backend>> create(const PluginContext& context) {
  return std::unique_ptr<Backend>(std::make_unique<UffdMemory>(context.log));
}

}  // namespace

extern const PluginDescriptor kDescriptor;
const PluginDescriptor kDescriptor{
    FCVM_PLUGIN_DESCRIPTOR_HEAD,
    PluginKind::memory,
    kPluginName,
    "0.1.0",
    "userfaultfd page server with Firecracker's UFFD handshake; working-set prefetch; survives restarts",
    &create,
};

}  // namespace fcvm::uffd

FCVM_PLUGIN(fcvm::uffd::kDescriptor)
