#include "firecracker_options.h"

namespace fcvm::firecracker {

const char* to_api(SnapshotType type) noexcept {
  return type == SnapshotType::diff ? "Diff" : "Full";
}

Result<FirecrackerOptions> FirecrackerOptions::parse(const nlohmann::json& options) {
  FirecrackerOptions out;
  if (options.is_null()) return out;
  if (!options.is_object()) {
    return error(Errc::invalid_argument,
                 "vmm options must be an object like {\"snapshot_type\": \"Diff\"}, got " +
                     options.dump());
  }
  for (const auto& [key, value] : options.items()) {
    if (key == "snapshot_type") {
      if (value == "Full") {
        out.snapshot_type = SnapshotType::full;
      } else if (value == "Diff") {
        out.snapshot_type = SnapshotType::diff;
      } else {
        return error(Errc::invalid_argument,
                     "vmm option 'snapshot_type' must be \"Full\" or \"Diff\", got " + value.dump());
      }
    } else {
      return error(Errc::invalid_argument,
                   "unknown vmm option '" + key + "' (known options: snapshot_type)");
    }
  }
  return out;
}

}  // namespace fcvm::firecracker
