// Engine's plugin services: where plugins are searched, what a factory is handed, and which
// backend each kind gets when the user chose none.
#include <unistd.h>

#include <cstdlib>

#include "engine/engine.h"
#include "memory/file_memory.h"
#include "plugin/plugin_registry.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

// Plugins installed beside the binary: bin/fcvm -> lib/fcvm/plugins. The build tree has the
// same layout, so a freshly built fcvm finds its plugins with no flags.
#ifndef FCVM_PLUGIN_DIR_FROM_BIN
#define FCVM_PLUGIN_DIR_FROM_BIN "../lib/fcvm/plugins"
#endif

std::optional<fs::path> bundled_plugin_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return std::nullopt;
  return (exe.parent_path() / FCVM_PLUGIN_DIR_FROM_BIN).lexically_normal();
}

// Defaults for kinds the user left unchosen. vmm: the first whose probe passes.
constexpr const char* kVmmDefaults[] = {"vmm-firecracker", "vmm-qemu"};
constexpr const char* kStorageDefault = "storage-squashfs";
constexpr const char* kMemoryDefault = "file";

}  // namespace

PluginRegistry& Engine::plugin_registry() {
  if (!plugins_) {
    std::vector<fs::path> dirs = flag_plugin_dirs_;
    if (const char* path = std::getenv("FCVM_PLUGIN_PATH")) {
      std::string_view rest(path);
      while (!rest.empty()) {
        const auto colon = rest.find(':');
        if (colon != 0) dirs.emplace_back(rest.substr(0, colon));
        rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
      }
    }
    // config().plugin_dirs starts with the --plugin-dir flags again; the registry tries
    // each file once, so the repeat is harmless and the order stays flags first.
    const Config& cfg = *config_;
    dirs.insert(dirs.end(), cfg.plugin_dirs.begin(), cfg.plugin_dirs.end());
    if (auto bundled = bundled_plugin_dir()) dirs.push_back(*bundled);
    plugins_ = std::make_unique<PluginRegistry>(std::move(dirs), log_->child("plugins"));
    plugins_->add_builtin(file_memory_descriptor());
  }
  return *plugins_;
}

PluginContext Engine::plugin_context(const std::string& name) {
  return PluginContext{log_->child(name), config_->config_for(name), config_->data_dir};
}

Result<std::shared_ptr<Backend>> Engine::create_backend(const std::string& name) {
  return plugin_registry().create(name, plugin_context(name));
}

Result<std::shared_ptr<Backend>> Engine::load_backend(const std::string& name, PluginKind kind) {
  return plugin_registry().create_as<Backend>(name, kind, plugin_context(name));
}

Result<std::shared_ptr<Backend>> Engine::backend(PluginKind kind) {
  if (auto it = backends_.find(kind); it != backends_.end()) return it->second;

  std::shared_ptr<Backend> chosen;
  const auto& choices = config_->plugins;
  if (auto it = choices.find(kind); it != choices.end()) {
    auto made = load_backend(it->second, kind);
    if (!made.ok()) return made.status();
    chosen = std::move(made).value();
  } else {
    switch (kind) {
      case PluginKind::vmm: {
        std::string reasons;
        for (const char* name : kVmmDefaults) {
          auto made = load_backend(name, kind);
          std::string why;
          if (made.ok()) {
            Probe probe = (*made)->probe();
            if (probe.available) {
              chosen = std::move(made).value();
              break;
            }
            why = probe.reason;
          } else {
            why = made.status().message();
          }
          reasons += std::string(reasons.empty() ? "" : "; ") + name + ": " + why;
        }
        if (!chosen) {
          return error(Errc::unavailable, "no usable VMM (" + reasons +
                                              "); fix one of them, or choose one with --vmm NAME (see "
                                              "'fcvm plugins')");
        }
        break;
      }
      case PluginKind::storage:
      case PluginKind::memory: {
        auto made = load_backend(kind == PluginKind::storage ? kStorageDefault : kMemoryDefault, kind);
        if (!made.ok()) return made.status();
        chosen = std::move(made).value();
        break;
      }
      case PluginKind::network: break;  // no NIC unless one is chosen
    }
  }
  backends_.emplace(kind, chosen);
  return chosen;
}

Status Engine::check_plugin_choices() {
  for (const auto& [kind, name] : config_->plugins) {
    const PluginInfo* info = plugin_registry().find(name);
    if (info && info->kind == kind) continue;
    std::string installed;
    for (const auto& p : plugin_registry().plugins()) {
      if (p.kind == kind) installed += (installed.empty() ? "" : ", ") + p.name;
    }
    const std::string choice = std::string("--plugin ") + to_string(kind) + "=" + name;
    return error(Errc::invalid_argument,
                 choice + ": " +
                     (info ? "'" + name + "' is a " + to_string(info->kind) + " plugin"
                           : "no plugin named '" + name + "'") +
                     "; " + to_string(kind) + " plugins here: " + (installed.empty() ? "none" : installed) +
                     " (see 'fcvm plugins')");
  }
  return Status();
}

Result<std::string> Engine::chosen_plugin(PluginKind kind) {
  const auto& choices = config_->plugins;
  if (auto it = choices.find(kind); it != choices.end()) return it->second;
  switch (kind) {
    case PluginKind::vmm: {
      auto vmm = backend(kind);
      if (!vmm.ok()) return vmm.status();
      return PluginRegistry::plugin_name_of(*vmm);
    }
    case PluginKind::storage: return std::string(kStorageDefault);
    case PluginKind::memory: return std::string(kMemoryDefault);
    case PluginKind::network: return std::string();
  }
  return std::string();
}

Result<SessionBackends> Engine::session_backends() {
  SessionBackends out;
  for (auto kind : {PluginKind::vmm, PluginKind::storage, PluginKind::network}) {
    auto made = backend(kind);
    if (!made.ok()) return made.status();
    auto name = chosen_plugin(kind);
    if (!name.ok()) return name.status();
    if (!name->empty()) out.names[kind] = *name;
    switch (kind) {
      case PluginKind::vmm: out.vmm = std::static_pointer_cast<VmmBackend>(*made); break;
      case PluginKind::storage: out.storage = std::static_pointer_cast<StorageBackend>(*made); break;
      case PluginKind::network: out.network = std::static_pointer_cast<NetworkBackend>(*made); break;
      case PluginKind::memory: break;
    }
  }
  return out;
}

}  // namespace fcvm
