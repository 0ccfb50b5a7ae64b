// The network-bridged plugin's descriptor and factory.
#include "fcvm/plugin.h"

#include <memory>

#include "bridged_network.h"

namespace fcvm::bridged {
namespace {

Result<std::unique_ptr<Backend>> create(const PluginContext& context) {
  auto options = Options::from_json(context.config);
  if (!options) return options.status();
  return std::unique_ptr<Backend>(
      std::make_unique<BridgedNetwork>(kHostAllocations, *options, context.log));
}

}  // namespace

extern const PluginDescriptor kDescriptor;
const PluginDescriptor kDescriptor{
    FCVM_PLUGIN_DESCRIPTOR_HEAD,
    PluginKind::network,
    kPluginName,
    "0.1.0",
    "network namespace + veth + tap per VM, /30 from a pool, nftables NAT and published ports (root)",
    &create,
};

}  // namespace fcvm::bridged

FCVM_PLUGIN(fcvm::bridged::kDescriptor)
