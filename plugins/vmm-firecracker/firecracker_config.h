// FirecrackerConfig: the vmm-firecracker plugin's settings, from its config object.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "fcvm/result.h"

namespace fcvm::firecracker {

struct FirecrackerConfig {
  std::string binary = "firecracker";  // looked up in PATH when it has no '/'

  // Parses {"binary": "..."} (null counts as {}). Unknown keys and bad values fail with
  // invalid_argument naming the key.
  static Result<FirecrackerConfig> parse(const nlohmann::json& config);
};

}  // namespace fcvm::firecracker
