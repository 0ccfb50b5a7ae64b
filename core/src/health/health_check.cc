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
