// The storage-btrfs plugin's descriptor and factory.
#include "fcvm/plugin.h"

#include <memory>

#include "btrfs_storage.h"

namespace fcvm::btrfs {
namespace {

Result<std::unique_ptr<Backend>> create(const PluginContext& context) {
  auto options = Options::from_json(context.config);
  if (!options) return options.status();
  return make_backend<BtrfsStorage>(context.data_dir, *options, context.log);
}

}  // namespace
}  // namespace fcvm::btrfs

FCVM_DECLARE_PLUGIN(fcvm::PluginKind::storage, fcvm::btrfs::kPluginName, "0.1.0",
                    "per-VM read-write ext4 root disks, reflinks of one ext4 base per image on btrfs",
                    &fcvm::btrfs::create)
