// The network-bridged plugin's descriptor and factory.
#include "fcvm/plugin.h"

#include <memory>

#include "bridged_network.h"

namespace fcvm::bridged {
namespace {

Result<std::unique_ptr<Backend>> create(const PluginContext& context) {
  auto options = Options::from_json(context.config);
  if (!options) return options.status();
  return make_backend<BridgedNetwork>(kHostAllocations, *options, context.log);
}

}  // namespace
}  // namespace fcvm::bridged

FCVM_DECLARE_PLUGIN(fcvm::PluginKind::network, fcvm::bridged::kPluginName, "0.1.0",
                    "network namespace + veth + tap per VM, /30 from a pool, nftables NAT and published ports (root)",
                    &fcvm::bridged::create)
