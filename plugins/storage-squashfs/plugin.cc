// The storage-squashfs plugin's descriptor and factory.
#include "fcvm/plugin.h"

#include <memory>

#include "squashfs_storage.h"

namespace fcvm::squashfs {
namespace {

Result<std::unique_ptr<Backend>> create(const PluginContext& context) {
  auto options = Options::from_json(context.config);
  if (!options) return options.status();
  return make_backend<SquashfsStorage>(context.data_dir / kPluginName, *options, context.log);
}

}  // namespace
}  // namespace fcvm::squashfs

FCVM_DECLARE_PLUGIN(fcvm::PluginKind::storage, fcvm::squashfs::kPluginName, "0.1.0",
                    "read-only squashfs base per image, per-VM sparse ext4 scratch disk for an overlay",
                    &fcvm::squashfs::create)
