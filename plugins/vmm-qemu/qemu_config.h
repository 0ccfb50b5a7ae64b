// QemuConfig: the vmm-qemu plugin's settings, from its config object and the environment.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "fcvm/result.h"

namespace fcvm::qemu {

enum class AccelMode { automatic, kvm, tcg };

const char* to_string(AccelMode mode) noexcept;

struct QemuConfig {
  AccelMode accel = AccelMode::automatic;
  // Where `accel` came from, for messages: "default", "config" or "FCVM_QEMU_ACCEL".
  std::string accel_source = "default";
  std::string binary = "qemu-system-x86_64";  // looked up in PATH when it has no '/'
  // The LD_PRELOAD library giving a clone UFFD memory (fcvm-uffd-shim.so); empty: the one
  // installed beside the plugin directory (<libdir>/fcvm/fcvm-uffd-shim.so).
  std::string uffd_shim;

  // Parses the plugin's config object ({"accel": "auto|kvm|tcg", "binary": "...",
  // "uffd_shim": "..."}; null
  // counts as {}), then applies `accel_env` (the value of FCVM_QEMU_ACCEL, or nullptr),
  // which overrides the config. Unknown keys and bad values fail with invalid_argument
  // naming the key.
  static Result<QemuConfig> parse(const nlohmann::json& config, const char* accel_env);
};

}  // namespace fcvm::qemu
