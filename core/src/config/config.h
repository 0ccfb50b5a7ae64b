// Config: fcvm's effective settings, merged from defaults < config file < environment <
// command-line flags.
//
// The config file is JSON:
//   {
//     "data_dir": "/var/lib/fcvm",
//     "plugin_dirs": ["/opt/fcvm/plugins"],
//     "plugins": {"vmm": "vmm-qemu", "network": "network-slirp", "storage": "...", "memory": "..."},
//     "plugin_config": {"vmm-qemu": {"accel": "tcg"}},
//     "log_level": "warning"
//   }
// Every key is optional. An unknown key or a value of the wrong type is an error naming the
// file and the key path ("plugins.vmm: expected a string, got number"), so a typo never
// silently falls back to a default. Relative paths in a file are relative to the file's
// directory; relative paths from flags or the environment are relative to the working dir.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fcvm/log.h"
#include "fcvm/plugin.h"
#include "fcvm/result.h"

namespace fcvm {

// Looks up an environment variable; nullopt when unset. A parameter rather than getenv so
// tests can supply their own environment.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;

// The real process environment. An empty value counts as unset.
EnvLookup process_environment();

// Everything the loader reads besides the file itself.
struct ConfigInputs {
  std::optional<std::filesystem::path> config_file;  // --config
  std::optional<std::filesystem::path> data_dir;     // --data-dir
  std::vector<std::filesystem::path> plugin_dirs;    // --plugin-dir, searched before the file's
  std::vector<std::string> plugin_choices;           // "kind=name" from --plugin and shorthands
  std::optional<std::string> log_level;              // --log-level
  EnvLookup env;                                     // empty: no environment at all
  // Read when neither --config nor $FCVM_CONFIG names a file, and only if it exists.
  std::filesystem::path default_config_file = "/etc/fcvm/config.json";
};

class Config {
 public:
  std::filesystem::path data_dir = "/var/lib/fcvm";  // always absolute after load()
  // Extra plugin directories (flags first, then the file's). The loader's built-in
  // directories are not listed here.
  std::vector<std::filesystem::path> plugin_dirs;
  std::map<PluginKind, std::string> plugins;  // chosen backend per kind; absent: the default
  nlohmann::json plugin_config = nlohmann::json::object();  // plugin name -> its object
  LogLevel log_level = LogLevel::warning;
  // Cap on each VM's container log and console log: past it the container log rotates
  // (one previous file kept) and the console keeps its newest half. 0: no cap.
  std::uint64_t log_max_bytes = 16u << 20;
  std::filesystem::path source;  // the config file read, or empty

  // Builds the effective config. Sources: inputs.config_file, else $FCVM_CONFIG, else
  // inputs.default_config_file if it exists. A file named explicitly (flag or environment)
  // must exist. Errors are invalid_argument (bad content, flag or variable) or not_found
  // (missing explicit file), with a message that names the source and the fix.
  static Result<Config> load(const ConfigInputs& inputs);

  // Parses and validates one config file's content over `base` (the settings so far).
  // `origin` names the source in messages ("config /etc/fcvm/config.json").
  static Result<Config> merge_file(Config base, const nlohmann::json& doc,
                                   const std::string& origin,
                                   const std::filesystem::path& relative_to);

  // The plugin's own object from plugin_config, or {} when it has none.
  nlohmann::json config_for(const std::string& plugin) const;

  // The effective settings in the config file's format (without `source`), so the output
  // of `fcvm config show` can be saved and read back as a config file.
  nlohmann::json to_json() const;
};

// Parses "kind=name" (as given to --plugin). Errors say what the fix is.
Result<std::pair<PluginKind, std::string>> parse_plugin_choice(std::string_view text);

// An exception's text for a user: nlohmann's "[json.exception.parse_error.101] " prefix is
// dropped (the rest names the position or the key).
std::string json_error_text(const std::exception& e);

}  // namespace fcvm
