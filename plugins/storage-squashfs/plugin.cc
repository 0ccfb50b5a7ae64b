// The storage-squashfs plugin's descriptor and factory.
#include "fcvm/plugin.h"

#include <memory>

#include "squashfs_storage.h"

namespace fcvm::squashfs {
namespace {

Result<std::unique_ptr<Backend>> create(const PluginContext& context) {
  auto options = Options::from_json(context.config);
  if (!options) return options.status();
  return std::unique_ptr<Backend>(
      std::make_unique<SquashfsStorage>(context.data_dir / kPluginName, *options, context.log));
}

}  // namespace

extern const PluginDescriptor kDescriptor;
const PluginDescriptor kDescriptor{
    FCVM_PLUGIN_DESCRIPTOR_HEAD,
    PluginKind::storage,
    kPluginName,
    "0.1.0",
    "read-only squashfs base per image, per-VM sparse ext4 scratch disk for an overlay",
    &create,
};

}  // namespace fcvm::squashfs

FCVM_PLUGIN(fcvm::squashfs::kDescriptor)
