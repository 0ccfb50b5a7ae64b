#include "qemu_config.h"

#include <optional>
#include <string_view>

namespace fcvm::qemu {
namespace {

std::optional<AccelMode> parse_accel(std::string_view text) {
  if (text == "auto") return AccelMode::automatic;
  if (text == "kvm") return AccelMode::kvm;
  if (text == "tcg") return AccelMode::tcg;
  return std::nullopt;
}

}  // namespace

const char* to_string(AccelMode mode) noexcept {
  switch (mode) {
    case AccelMode::automatic: return "auto";
    case AccelMode::kvm: return "kvm";
    case AccelMode::tcg: return "tcg";
  }
  return "?";
}

Result<QemuConfig> QemuConfig::parse(const nlohmann::json& config, const char* accel_env) {
  QemuConfig out;
  if (!config.is_null() && !config.is_object()) {
    return error(Errc::invalid_argument,
                 "config must be an object like {\"accel\": \"auto\"}, got " + config.dump());
  }
  if (config.is_object()) {
    for (const auto& [key, value] : config.items()) {
      if (key == "accel") {
        auto mode = value.is_string() ? parse_accel(value.get<std::string>()) : std::nullopt;
        if (!mode) {
          return error(Errc::invalid_argument, "config key 'accel' must be \"auto\", \"kvm\" or "
                                               "\"tcg\", got " + value.dump());
        }
        out.accel = *mode;
        out.accel_source = "config";
      } else if (key == "binary") {
        if (!value.is_string() || value.get<std::string>().empty()) {
          return error(Errc::invalid_argument,
                       "config key 'binary' must be a non-empty string, got " + value.dump());
        }
        out.binary = value.get<std::string>();
      } else if (key == "uffd_shim") {
        if (!value.is_string() || value.get<std::string>().empty()) {
          return error(Errc::invalid_argument,
                       "config key 'uffd_shim' must be a non-empty path, got " + value.dump());
        }
        out.uffd_shim = value.get<std::string>();
      } else {
        return error(Errc::invalid_argument,
                     "unknown config key '" + key + "' (known keys: accel, binary, uffd_shim)");
      }
    }
  }
  if (accel_env != nullptr && *accel_env != '\0') {
    auto mode = parse_accel(accel_env);
    if (!mode) {
      return error(Errc::invalid_argument, std::string("FCVM_QEMU_ACCEL must be auto, kvm or tcg, got '") +
                                               accel_env + "'");
    }
    out.accel = *mode;
    out.accel_source = "FCVM_QEMU_ACCEL";
  }
  return out;
}

}  // namespace fcvm::qemu
