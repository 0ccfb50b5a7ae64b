// Container health checks as podman's --health-* flags define them: a command run in the
// guest (through the agent) or an HTTP GET from the host through the VM's published port,
// every `interval`, failing after `timeout`; `retries` consecutive failures outside the
// `start_period` make the VM unhealthy, one success makes it healthy.
//
// This file holds the parts that do not depend on the VM session: the spec and its flag
// parsing, the state machine, and the HTTP probe. The session's event loop owns a
// HealthTracker, runs a probe each interval and writes status() into the VM's record.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fcvm/network.h"
#include "fcvm/result.h"
#include "health/http_probe.h"
#include "state/health_state.h"

namespace fcvm {

struct HealthCheckSpec {
  std::vector<std::string> command;  // --health-cmd, run with /bin/sh -c in the guest
  std::string url;                   // --health-url
  std::chrono::milliseconds interval{30000};
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds start_period{0};
  unsigned retries = 3;

  bool enabled() const { return !command.empty() || !url.empty(); }
};

// Parses podman's flag values: durations in Go's form ("30s", "1m30s", "500ms", "2h"),
// interval "disable" (no check), retries >= 1. invalid_argument names the flag.
struct HealthFlags {
  std::optional<std::string> cmd, url, interval, timeout, start_period, retries;
};
Result<HealthCheckSpec> parse_health_flags(const HealthFlags& flags);
Result<std::chrono::milliseconds> parse_go_duration(const std::string& text);

// Not thread-safe: owned by the session's event loop.
class HealthTracker {
 public:
  HealthTracker(HealthCheckSpec spec, std::chrono::steady_clock::time_point started)
      : spec_(std::move(spec)), started_(started) {}

  // Records one probe's outcome at `now` and returns the new status.
  HealthStatus record(bool passed, std::chrono::steady_clock::time_point now, std::string output = {});

  HealthStatus status() const { return status_; }
  unsigned failing_streak() const { return failing_streak_; }
  const std::string& last_output() const { return last_output_; }
  const HealthCheckSpec& spec() const { return spec_; }
  // status, failing streak and last output (`checked` is the caller's to fill).
  HealthState state() const { return {status_, failing_streak_, last_output_, {}}; }

 private:
  HealthCheckSpec spec_;
  std::chrono::steady_clock::time_point started_;
  HealthStatus status_ = HealthStatus::starting;
  unsigned failing_streak_ = 0;
  std::string last_output_;
};

// "http://guest:80/path" names a guest port: it becomes the host address and port that
// `ports` publish it on (0.0.0.0 reached as 127.0.0.1). Other URLs are returned as given.
// invalid_argument when the guest port is not published.
Result<std::string> resolve_health_url(const std::string& url, const std::vector<PortMapping>& ports);

}  // namespace fcvm
