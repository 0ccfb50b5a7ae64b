// A VM's health as its state record keeps it (VmRecord::health): the persisted half of
// health/health_check.h, here so that the record does not depend on the checks that fill it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fcvm/result.h"

namespace fcvm {

enum class HealthStatus { starting, healthy, unhealthy };
const char* to_string(HealthStatus status);
std::optional<HealthStatus> parse_health_status(std::string_view text);

// What the VM's record says about its health (VmRecord::health), as `fcvm ls` and
// `fcvm inspect` show it. last_output is printable ASCII (see escape_probe_output).
struct HealthState {
  HealthStatus status = HealthStatus::starting;
  unsigned failing_streak = 0;
  std::string last_output;  // the last probe's output or failure
  std::string checked;      // when the last probe ended, RFC3339 UTC; empty before the first

  bool operator==(const HealthState&) const = default;
};
nlohmann::json to_json(const HealthState& state);
// invalid_argument naming the field when `doc` is not a HealthState.
Result<HealthState> health_state_from_json(const nlohmann::json& doc);

// Guest output made safe for records and terminals: printable ASCII kept, \n and \t
// spelled out, other bytes as \xNN, cut to kMaxProbeOutput characters ("..." marks a cut).
inline constexpr std::size_t kMaxProbeOutput = 500;
std::string escape_probe_output(std::string_view raw);

}  // namespace fcvm
