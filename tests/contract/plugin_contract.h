// Shared pieces of the interface contract suites: which plugins of a kind the build made,
// loading one through the real loader, and checks that nothing was left running.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "fcvm/plugin.h"
#include "fcvm/temp_dir.h"
#include "plugin/plugin_registry.h"

namespace fcvm::contract {

// Names of the plugins of `kind` in the build's plugin directory, sorted.
std::vector<std::string> plugins_of(PluginKind kind);

// gtest parameter names: plugin names with '-' turned into '_'.
std::string param_name(const ::testing::TestParamInfo<std::string>& info);

// Creates plugin `name` as interface T through a PluginRegistry over the build's plugin
// directory, with `config` (the plugin's own object) and `data_dir`.
template <class T>
Result<std::shared_ptr<T>> load(const std::string& name, PluginKind kind,
                                const std::filesystem::path& data_dir,
                                nlohmann::json config = nlohmann::json::object()) {
  PluginRegistry registry({FCVM_PLUGIN_DIR}, nullptr);
  return registry.create_as<T>(name, kind, PluginContext{null_logger(), std::move(config), data_dir});
}

// PIDs of this process's live children (all threads). Contract tests run no other children
// of their own, so a backend call that leaves a process behind shows up here.
std::vector<pid_t> child_pids();

// True while a process with this pid exists (not a zombie).
bool process_alive(pid_t pid);

}  // namespace fcvm::contract
