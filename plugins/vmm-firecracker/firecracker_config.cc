#include "firecracker_config.h"

namespace fcvm::firecracker {

Result<FirecrackerConfig> FirecrackerConfig::parse(const nlohmann::json& config) {
  FirecrackerConfig out;
  if (config.is_null()) return out;
  if (!config.is_object()) {
    return error(Errc::invalid_argument,
                 "config must be an object like {\"binary\": \"/usr/local/bin/firecracker\"}, got " +
                     config.dump());
  }
  for (const auto& [key, value] : config.items()) {
    if (key != "binary") {
      return error(Errc::invalid_argument, "unknown config key '" + key + "' (known keys: binary)");
    }
    if (!value.is_string() || value.get<std::string>().empty()) {
      return error(Errc::invalid_argument,
                   "config key 'binary' must be a non-empty string, got " + value.dump());
    }
    out.binary = value.get<std::string>();
  }
  return out;
}

}  // namespace fcvm::firecracker
