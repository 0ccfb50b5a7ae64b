// The network-slirp plugin's descriptor and factory.
#include "fcvm/plugin.h"

#include <memory>

#include "slirp_network.h"

namespace fcvm::slirp {
namespace {

Result<std::unique_ptr<Backend>> create(const PluginContext& context) {
  auto options = Options::from_json(context.config);
  if (!options) return options.status();
  return make_backend<SlirpNetwork>(context.data_dir / kPluginName, *options, context.log);
}

}  // namespace
}  // namespace fcvm::slirp

FCVM_DECLARE_PLUGIN(fcvm::PluginKind::network, fcvm::slirp::kPluginName, "0.1.0",
                    "rootless: user + network namespace per VM, slirp4netns, ports on a loopback address per VM",
                    &fcvm::slirp::create)
