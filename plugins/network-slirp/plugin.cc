// The network-slirp plugin's descriptor and factory.
#include "fcvm/plugin.h"

#include <memory>

#include "slirp_network.h"

namespace fcvm::slirp {
namespace {

Result<std::unique_ptr<Backend>> create(const PluginContext& context) {
  auto options = Options::from_json(context.config);
  if (!options) return options.status();
  return std::unique_ptr<Backend>(
      std::make_unique<SlirpNetwork>(context.data_dir / kPluginName, *options, context.log));
}

}  // namespace

extern const PluginDescriptor kDescriptor;
const PluginDescriptor kDescriptor{
    FCVM_PLUGIN_DESCRIPTOR_HEAD,
    PluginKind::network,
    kPluginName,
    "0.1.0",
    "rootless: user + network namespace per VM, slirp4netns, ports on a loopback address per VM",
    &create,
};

}  // namespace fcvm::slirp

FCVM_PLUGIN(fcvm::slirp::kDescriptor)
