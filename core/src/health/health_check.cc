#include "health/health_check.h"

#include <arpa/inet.h>

#include <cctype>

namespace fcvm {

Result<std::chrono::milliseconds> parse_go_duration(const std::string& text) {
  if (text.empty()) return error(Errc::invalid_argument, "empty duration");
  if (text == "0") return std::chrono::milliseconds(0);
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    if (start == i) return error(Errc::invalid_argument, "bad duration '" + text + "' (e.g. 30s, 1m30s, 500ms)");
    const double value = std::stod(text.substr(start, i - start));
    start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    const std::string unit = text.substr(start, i - start);
    double scale = 0;
    if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else return error(Errc::invalid_argument, "bad duration '" + text + "' (units: ms, s, m, h)");
    total_ms += value * scale;
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(total_ms));
}

Result<HealthCheckSpec> parse_health_flags(const HealthFlags& flags) {
  HealthCheckSpec spec;
  if (flags.cmd && flags.url) {
    return error(Errc::invalid_argument, "--health-cmd and --health-url exclude each other; pass one");
  }
  if (flags.cmd) {
    if (flags.cmd->empty() || *flags.cmd == "none") return HealthCheckSpec{};
    spec.command = {"/bin/sh", "-c", *flags.cmd};
  }
  if (flags.url) {
    auto parsed = parse_http_url(*flags.url);
    if (!parsed) return parsed.status();
    in_addr address{};
    if (parsed->host != "guest" && ::inet_pton(AF_INET, parsed->host.c_str(), &address) != 1) {
      return error(Errc::invalid_argument, "--health-url " + *flags.url +
                                               ": the host must be 'guest' (a published guest port) or an IPv4 address");
    }
    spec.url = *flags.url;
  }
  auto duration = [](const std::optional<std::string>& v, const char* flag,
                     std::chrono::milliseconds& out) -> Status {
    if (!v) return ok_status();
    auto d = parse_go_duration(*v);
    if (!d) return d.status().with_context(std::string(flag) + ": ");
    out = *d;
    return ok_status();
  };
  if (flags.interval && *flags.interval == "disable") return HealthCheckSpec{};
  FCVM_RETURN_IF_ERROR(duration(flags.interval, "--health-interval", spec.interval));
  FCVM_RETURN_IF_ERROR(duration(flags.timeout, "--health-timeout", spec.timeout));
  FCVM_RETURN_IF_ERROR(duration(flags.start_period, "--health-start-period", spec.start_period));
  if (spec.interval.count() == 0 || spec.timeout.count() == 0) {
    return error(Errc::invalid_argument, "--health-interval and --health-timeout must be more than 0");
  }
  if (flags.retries) {
    const auto& r = *flags.retries;
    if (r.empty() || r.size() > 6 || r.find_first_not_of("0123456789") != std::string::npos || std::stoul(r) == 0) {
      return error(Errc::invalid_argument, "--health-retries: expected a number of at least 1");
    }
    spec.retries = static_cast<unsigned>(std::stoul(r));
  }
  if (!spec.enabled() && (flags.interval || flags.timeout || flags.start_period || flags.retries)) {
    return error(Errc::invalid_argument, "--health-* options need --health-cmd or --health-url");
  }
  return spec;
}

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

HealthStatus HealthTracker::record(bool passed, std::chrono::steady_clock::time_point now, std::string output) {
  last_output_ = std::move(output);
  if (passed) {
    failing_streak_ = 0;
    status_ = HealthStatus::healthy;
    return status_;
  }
  // As podman: failures during the start period do not count, unless the check has
  // already passed once.
  if (status_ == HealthStatus::starting && now - started_ < spec_.start_period) return status_;
  if (++failing_streak_ >= spec_.retries) status_ = HealthStatus::unhealthy;
  return status_;
}

Result<std::string> resolve_health_url(const std::string& url, const std::vector<PortMapping>& ports) {
  auto parsed = parse_http_url(url);
  if (!parsed) return parsed.status();
  if (parsed->host != "guest") return url;
  for (const auto& p : ports) {
    if (p.proto == "tcp" && p.guest_port == parsed->port) {
      const std::string host = p.host_ip == "0.0.0.0" ? "127.0.0.1" : p.host_ip;
      return "http://" + host + ":" + std::to_string(p.host_port) + parsed->path;
    }
  }
  return error(Errc::invalid_argument, "--health-url " + url + ": guest port " + std::to_string(parsed->port) +
                                           " is not published; add -p HOST_PORT:" + std::to_string(parsed->port));
}

}  // namespace fcvm
