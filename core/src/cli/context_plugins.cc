// CommandContext's plugin services: where plugins are searched, what a factory is handed,
// and which backend each kind gets when the user chose none.
#include <unistd.h>

#include <cstdlib>

#include "cli/command.h"
#include "config/config.h"
#include "memory/file_memory.h"
#include "plugin/plugin_registry.h"

namespace fcvm::cli {
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

PluginRegistry& CommandContext::plugins() {
  if (!plugins_) {
    std::vector<fs::path> dirs = globals_.plugin_dirs;
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
    const Config& cfg = config();
    dirs.insert(dirs.end(), cfg.plugin_dirs.begin(), cfg.plugin_dirs.end());
    if (auto bundled = bundled_plugin_dir()) dirs.push_back(*bundled);
    plugins_ = std::make_unique<PluginRegistry>(std::move(dirs), log()->child("plugins"));
    plugins_->add_builtin(file_memory_descriptor());
  }
  return *plugins_;
}

PluginContext CommandContext::plugin_context(const std::string& name) {
  return PluginContext{log()->child(name), config().config_for(name), config().data_dir};
}

std::shared_ptr<Backend> CommandContext::backend(PluginKind kind) {
  if (auto it = backends_.find(kind); it != backends_.end()) return it->second;

  auto make = [&](const std::string& name) -> std::shared_ptr<Backend> {
    auto made = plugins().create_as<Backend>(name, kind, plugin_context(name));
    if (!made.ok()) throw CliError(made.status());
    return std::move(made).value();
  };

  std::shared_ptr<Backend> chosen;
  const auto& choices = config().plugins;
  if (auto it = choices.find(kind); it != choices.end()) {
    chosen = make(it->second);
  } else {
    switch (kind) {
      case PluginKind::vmm: {
        std::string reasons;
        for (const char* name : kVmmDefaults) {
          auto made = plugins().create_as<Backend>(name, kind, plugin_context(name));
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
          throw CliError("no usable VMM (" + reasons +
                         "); fix one of them, or choose one with --vmm NAME (see 'fcvm "
                         "plugins')");
        }
        break;
      }
      case PluginKind::storage: chosen = make(kStorageDefault); break;
      case PluginKind::memory: chosen = make(kMemoryDefault); break;
      case PluginKind::network: break;  // no NIC unless one is chosen
    }
  }
  backends_.emplace(kind, chosen);
  return chosen;
}

void CommandContext::check_plugin_choices() {
  for (const auto& [kind, name] : config().plugins) {
    const PluginInfo* info = plugins().find(name);
    if (info && info->kind == kind) continue;
    std::string installed;
    for (const auto& p : plugins().plugins()) {
      if (p.kind == kind) installed += (installed.empty() ? "" : ", ") + p.name;
    }
    const std::string choice = std::string("--plugin ") + to_string(kind) + "=" + name;
    throw CliError(choice + ": " +
                   (info ? "'" + name + "' is a " + to_string(info->kind) + " plugin"
                         : "no plugin named '" + name + "'") +
                   "; " + to_string(kind) + " plugins here: " +
                   (installed.empty() ? "none" : installed) + " (see 'fcvm plugins')",
                   kUsageExit);
  }
}

std::string CommandContext::chosen_plugin(PluginKind kind) {
  const auto& choices = config().plugins;
  if (auto it = choices.find(kind); it != choices.end()) return it->second;
  switch (kind) {
    case PluginKind::vmm: return PluginRegistry::plugin_name_of(backend(kind));
    case PluginKind::storage: return kStorageDefault;
    case PluginKind::memory: return kMemoryDefault;
    case PluginKind::network: return {};
  }
  return {};
}

}  // namespace fcvm::cli
