// Engine: what the host needs before any VM runs.
#include "engine/engine.h"
#include "fcvm/storage.h"
#include "session/guest_assets.h"
#include "setup/initramfs_builder.h"

namespace fcvm {

Result<KernelPaths> Engine::setup_kernel() {
  KernelBuildOptions opts;
  opts.data_dir = config_->data_dir;
  return KernelBuilder(opts, log_->child("kernel")).ensure();
}

Result<std::filesystem::path> Engine::setup_initramfs() {
  return InitramfsBuilder(config_->data_dir, log_->child("initramfs")).ensure(agent_binary_path());
}

Result<std::pair<std::string, std::string>> Engine::setup_storage() {
  const auto it = config_->plugins.find(PluginKind::storage);
  const std::string name = it != config_->plugins.end() ? it->second : "storage-btrfs";
  auto backend = load_backend(name, PluginKind::storage);
  if (!backend.ok()) return backend.status();
  auto done = std::static_pointer_cast<StorageBackend>(*backend)->setup_host();
  if (!done.ok()) return done.status();
  return std::pair{name, std::move(done).value()};
}

}  // namespace fcvm
