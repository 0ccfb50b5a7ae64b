#include "state/health_state.h"

namespace fcvm {

const char* to_string(HealthStatus status) {
  switch (status) {
    case HealthStatus::starting: return "starting";
    case HealthStatus::healthy: return "healthy";
    case HealthStatus::unhealthy: return "unhealthy";
  }
  return "unknown";
}

std::optional<HealthStatus> parse_health_status(std::string_view text) {
  for (auto s : {HealthStatus::starting, HealthStatus::healthy, HealthStatus::unhealthy}) {
    if (text == to_string(s)) return s;
  }
  return std::nullopt;
}

nlohmann::json to_json(const HealthState& state) {
  return {{"status", to_string(state.status)},
          {"failing_streak", state.failing_streak},
          {"last_output", state.last_output},
          {"checked", state.checked}};
}

Result<HealthState> health_state_from_json(const nlohmann::json& doc) {
  auto bad = [](const std::string& what) { return error(Errc::invalid_argument, "field 'health': " + what); };
  if (!doc.is_object()) return bad("expected an object");
  HealthState out;
  const auto status = doc.find("status");
  if (status == doc.end() || !status->is_string()) return bad("'status' must be a string");
  auto parsed = parse_health_status(status->get<std::string>());
  if (!parsed) return bad("unknown status '" + status->get<std::string>() + "'");
  out.status = *parsed;
  const auto streak = doc.find("failing_streak");
  if (streak != doc.end()) {
    if (!streak->is_number_unsigned()) return bad("'failing_streak' must be a number >= 0");
    out.failing_streak = streak->get<unsigned>();
  }
  for (auto [key, field] : {std::pair{"last_output", &out.last_output}, std::pair{"checked", &out.checked}}) {
    const auto it = doc.find(key);
    if (it == doc.end()) continue;
    if (!it->is_string()) return bad(std::string("'") + key + "' must be a string");
    *field = it->get<std::string>();
  }
  return out;
}

std::string escape_probe_output(std::string_view raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\\') out += "\\\\";
    else if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
    else out += std::string("\\x") + kHex[c >> 4] + kHex[c & 0xf];
    if (out.size() > kMaxProbeOutput) {
      out.resize(kMaxProbeOutput - 3);
      return out + "...";
    }
  }
  return out;
}

}  // namespace fcvm
