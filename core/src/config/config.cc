#include "config/config.h"

#include <cstdlib>
#include <system_error>

#include "fcvm/atomic_file.h"
#include "log/logging.h"

namespace fcvm {
namespace {

using nlohmann::json;

constexpr const char* kKnownKeys =
    "data_dir, plugin_dirs, plugins, plugin_config, log_level, log_max_bytes";
constexpr const char* kKinds = "vmm, network, storage, memory";
constexpr const char* kLevels = "trace, debug, info, warning, error";

// Absolute and normalized, without a trailing slash.
std::filesystem::path absolute_clean(const std::filesystem::path& p,
                                     const std::filesystem::path& relative_to = {}) {
  std::filesystem::path out = p;
  if (out.is_relative()) {
    out = relative_to.empty() ? std::filesystem::absolute(out) : relative_to / out;
  }
  out = out.lexically_normal();
  if (!out.has_filename() && out.has_parent_path() && out != out.root_path()) {
    out = out.parent_path();
  }
  return out;
}

// "config /etc/fcvm/config.json: plugins.vmm: expected a string, got number"
Status type_error(const std::string& origin, const std::string& key, const char* expected,
                  const json& got) {
  return error(Errc::invalid_argument,
               origin + ": " + key + ": expected " + expected + ", got " + got.type_name());
}

Status key_error(const std::string& origin, const std::string& key, const std::string& what) {
  return error(Errc::invalid_argument, origin + ": " + key + ": " + what);
}

Result<std::string> expect_string(const std::string& origin, const std::string& key,
                                  const json& value, bool allow_empty = false) {
  if (!value.is_string()) return type_error(origin, key, "a string", value);
  std::string s = value.get<std::string>();
  if (s.empty() && !allow_empty) return key_error(origin, key, "must not be empty");
  return s;
}


}  // namespace

std::string json_error_text(const std::exception& e) {
  std::string text = e.what();
  if (!text.empty() && text.front() == '[') {
    auto close = text.find("] ");
    if (close != std::string::npos) text.erase(0, close + 2);
  }
  return text;
}

EnvLookup process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
  };
}

Result<std::pair<PluginKind, std::string>> parse_plugin_choice(std::string_view text) {
  const std::string quoted = "--plugin '" + std::string(text) + "'";
  const auto eq = text.find('=');
  if (eq == std::string_view::npos) {
    return error(Errc::invalid_argument, quoted + ": expected KIND=NAME with KIND one of " +
                                             kKinds + ", e.g. --plugin vmm=vmm-qemu");
  }
  const std::string_view kind_text = text.substr(0, eq);
  const std::string name(text.substr(eq + 1));
  const auto kind = parse_plugin_kind(kind_text);
  if (!kind) {
    return error(Errc::invalid_argument, quoted + ": unknown kind '" + std::string(kind_text) +
                                             "'; use one of " + kKinds +
                                             ", e.g. --plugin vmm=vmm-qemu");
  }
  if (name.empty()) {
    return error(Errc::invalid_argument,
                 quoted + ": the plugin name is empty; e.g. --plugin " +
                     std::string(kind_text) + "=NAME (see 'fcvm plugins' for names)");
  }
  return std::make_pair(*kind, name);
}

Result<Config> Config::merge_file(Config base, const json& doc, const std::string& origin,
                                  const std::filesystem::path& relative_to) {
  if (!doc.is_object()) {
    return error(Errc::invalid_argument,
                 origin + ": expected a JSON object at the top level, got " + doc.type_name());
  }
  Config cfg = std::move(base);
  for (const auto& [key, value] : doc.items()) {
    if (key == "data_dir") {
      auto s = expect_string(origin, key, value);
      if (!s.ok()) return s.status();
      cfg.data_dir = absolute_clean(*s, relative_to);
    } else if (key == "plugin_dirs") {
      if (!value.is_array()) return type_error(origin, key, "an array of strings", value);
      std::vector<std::filesystem::path> dirs;
      for (size_t i = 0; i < value.size(); ++i) {
        auto s = expect_string(origin, key + "[" + std::to_string(i) + "]", value[i]);
        if (!s.ok()) return s.status();
        dirs.push_back(absolute_clean(*s, relative_to));
      }
      cfg.plugin_dirs.insert(cfg.plugin_dirs.end(), dirs.begin(), dirs.end());
    } else if (key == "plugins") {
      if (!value.is_object()) return type_error(origin, key, "an object", value);
      for (const auto& [kind_text, name] : value.items()) {
        const std::string path = key + "." + kind_text;
        const auto kind = parse_plugin_kind(kind_text);
        if (!kind) {
          return key_error(origin, path,
                           std::string("unknown plugin kind; use one of ") + kKinds);
        }
        auto s = expect_string(origin, path, name);
        if (!s.ok()) return s.status();
        cfg.plugins[*kind] = *s;
      }
    } else if (key == "plugin_config") {
      if (!value.is_object()) return type_error(origin, key, "an object", value);
      for (const auto& [plugin, object] : value.items()) {
        if (!object.is_object()) return type_error(origin, key + "." + plugin, "an object", object);
        cfg.plugin_config[plugin] = object;
      }
    } else if (key == "log_level") {
      auto s = expect_string(origin, key, value);
      if (!s.ok()) return s.status();
      const auto level = parse_log_level(*s);
      if (!level) {
        return key_error(origin, key,
                         "unknown log level '" + *s + "'; use one of " + kLevels);
      }
      cfg.log_level = *level;
    } else if (key == "log_max_bytes") {
      if (!value.is_number_unsigned()) {
        return type_error(origin, key, "a number of bytes (0: no cap)", value);
      }
      cfg.log_max_bytes = value.get<std::uint64_t>();
    } else {
      return error(Errc::invalid_argument, origin + ": unknown key '" + key +
                                               "'; known keys are " + kKnownKeys);
    }
  }
  return cfg;
}

Result<Config> Config::load(const ConfigInputs& in) {
  auto env = [&in](std::string_view name) -> std::optional<std::string> {
    return in.env ? in.env(name) : std::nullopt;
  };
  Config cfg;

  // Which file, and how the user can fix a missing one.
  std::filesystem::path file;
  std::string fix;
  if (in.config_file) {
    file = *in.config_file;
    fix = "create it or drop --config";
  } else if (auto from_env = env("FCVM_CONFIG")) {
    file = *from_env;
    fix = "create it or unset FCVM_CONFIG";
  } else {
    std::error_code ec;
    if (std::filesystem::exists(in.default_config_file, ec)) file = in.default_config_file;
  }
  if (!file.empty()) {
    file = absolute_clean(file);
    auto text = read_file(file);
    if (!text.ok()) {
      if (text.status().code() == Errc::not_found) {
        return error(Errc::not_found, "config file " + file.string() + " does not exist; " + fix);
      }
      return text.status().with_context("config: ");
    }
    const std::string origin = "config " + file.string();
    json doc;
    try {
      doc = json::parse(*text);
    } catch (const json::exception& e) {
      return error(Errc::invalid_argument, origin + ": not valid JSON: " + json_error_text(e));
    }
    auto merged = merge_file(std::move(cfg), doc, origin, file.parent_path());
    if (!merged.ok()) return merged.status();
    cfg = std::move(merged).value();
    cfg.source = file;
  }

  if (auto dir = env("FCVM_DATA_DIR")) cfg.data_dir = absolute_clean(*dir);
  if (auto level_text = env("FCVM_LOG")) {
    const auto level = parse_log_level(*level_text);
    if (!level) {
      return error(Errc::invalid_argument, "FCVM_LOG='" + *level_text +
                                               "': unknown log level; use one of " + kLevels);
    }
    cfg.log_level = *level;
  }

  if (in.data_dir) {
    if (in.data_dir->empty()) {
      return error(Errc::invalid_argument, "--data-dir: must not be empty");
    }
    cfg.data_dir = absolute_clean(*in.data_dir);
  }
  std::vector<std::filesystem::path> dirs;
  for (const auto& d : in.plugin_dirs) dirs.push_back(absolute_clean(d));
  cfg.plugin_dirs.insert(cfg.plugin_dirs.begin(), dirs.begin(), dirs.end());
  for (const auto& choice : in.plugin_choices) {
    auto parsed = parse_plugin_choice(choice);
    if (!parsed.ok()) return parsed.status();
    cfg.plugins[parsed->first] = parsed->second;
  }
  if (in.log_level) {
    const auto level = parse_log_level(*in.log_level);
    if (!level) {
      return error(Errc::invalid_argument, "--log-level '" + *in.log_level +
                                               "': unknown log level; use one of " + kLevels);
    }
    cfg.log_level = *level;
  }

  cfg.data_dir = absolute_clean(cfg.data_dir);
  return cfg;
}

nlohmann::json Config::config_for(const std::string& plugin) const {
  auto it = plugin_config.find(plugin);
  return it != plugin_config.end() && it->is_object() ? *it : json::object();
}

nlohmann::json Config::to_json() const {
  json plugins_json = json::object();
  for (const auto& [kind, name] : plugins) plugins_json[to_string(kind)] = name;
  json dirs = json::array();
  for (const auto& d : plugin_dirs) dirs.push_back(d.string());
  return json{{"data_dir", data_dir.string()},
              {"plugin_dirs", std::move(dirs)},
              {"plugins", std::move(plugins_json)},
              {"plugin_config", plugin_config.is_object() ? plugin_config : json::object()},
              {"log_level", to_string(log_level)},
              {"log_max_bytes", log_max_bytes}};
}

}  // namespace fcvm
