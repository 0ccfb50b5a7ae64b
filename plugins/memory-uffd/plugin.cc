// The memory-uffd plugin's descriptor and factory.
#include "fcvm/plugin.h"

#include <memory>

#include "uffd_memory.h"

namespace fcvm::uffd {
namespace {

Result<std::unique_ptr<Backend>> create(const PluginContext& context) {
  return make_backend<UffdMemory>(context.log);
}

}  // namespace
}  // namespace fcvm::uffd

FCVM_DECLARE_PLUGIN(fcvm::PluginKind::memory, fcvm::uffd::kPluginName, "0.1.0",
                    "userfaultfd page server with Firecracker's UFFD handshake; working-set prefetch; survives restarts",
                    &fcvm::uffd::create)
