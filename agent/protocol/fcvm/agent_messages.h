// The agent protocol's messages: the JSON payloads of the control frames, each with its
// to_payload() and parse function, side by side. Which frame carries which message, and
// when, is described in agent_protocol.h; the framing is in agent_framing.h.
//
// Shared by the static guest binary and the host library: the standard library and
// nlohmann::json only, nothing throws out of these functions, everything inline.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fcvm/agent_framing.h"  // kProtocolVersion

namespace fcvm::agent {

// Largest CREDIT or STDIN_CREDIT grant, and the largest output window.
inline constexpr std::uint32_t kMaxCreditBytes = 1u << 30;
// STDIN bytes the host may have in flight per session (see "Flow control").
inline constexpr std::uint32_t kStdinWindow = 256u << 10;

// The longest SHUTDOWN grace the agent accepts (10 minutes).
inline constexpr std::int64_t kMaxShutdownTimeoutMs = 600000;

// JSON payloads of the control frames. Each type has to_payload() and a parse function that
// returns nullopt and fills *error on a malformed payload. Guest->host messages are parsed
// leniently (unknown keys ignored, so a newer agent can add fields); host->guest messages
// are strict (unknown keys rejected, so a typo in a plan fails loudly).

namespace detail {
// Serialises without throwing: invalid UTF-8 in a string becomes U+FFFD. Used for the
// small status payloads, which must never fail to encode.
inline std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

inline std::optional<nlohmann::json> parse_object(std::string_view payload, std::string_view what,
                                                  std::string* error) {
  nlohmann::json j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    if (error) *error = std::string(what) + ": payload is not valid JSON";
    return std::nullopt;
  }
  if (!j.is_object()) {
    if (error) *error = std::string(what) + ": payload must be a JSON object";
    return std::nullopt;
  }
  return j;
}

// Reads an integer member in [lo, hi]; `required` decides whether absence is an error.
inline bool read_int(const nlohmann::json& obj, const char* key, std::int64_t lo, std::int64_t hi,
                     bool required, std::int64_t& value, std::string_view what,
                     std::string* error) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (!required) return true;
    if (error) *error = std::string(what) + "." + key + ": missing";
    return false;
  }
  if (!it->is_number_integer()) {
    if (error) *error = std::string(what) + "." + key + ": expected an integer";
    return false;
  }
  std::int64_t v = 0;
  if (it->is_number_unsigned()) {
    auto u = it->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(hi)) {
      if (error) *error = std::string(what) + "." + key + ": out of range";
      return false;
    }
    v = static_cast<std::int64_t>(u);
  } else {
    v = it->get<std::int64_t>();
  }
  if (v < lo || v > hi) {
    if (error) *error = std::string(what) + "." + key + ": out of range";
    return false;
  }
  value = v;
  return true;
}

inline bool reject_unknown_keys(const nlohmann::json& obj,
                                std::initializer_list<std::string_view> known,
                                std::string_view what, std::string* error) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool ok = false;
    for (auto k : known) ok = ok || it.key() == k;
    if (!ok) {
      if (error) *error = std::string(what) + "." + it.key() + ": unknown field";
      return false;
    }
  }
  return true;
}
}  // namespace detail

// HELLO: {"agent":"fc-agent","protocol":2,"kernel":"6.1.0","uptime_ms":612,"boot_id":"..."}
// uptime_ms is the guest's uptime when the HELLO was written (boot-time measurement);
// boot_id is the agent's boot id (see Attach above).
struct Hello {
  std::string agent = "fc-agent";
  int protocol = kProtocolVersion;
  std::string kernel;
  std::uint64_t uptime_ms = 0;
  std::string boot_id;

  std::string to_payload() const {
    return detail::dump({{"agent", agent}, {"protocol", protocol}, {"kernel", kernel},
                         {"uptime_ms", uptime_ms}, {"boot_id", boot_id}});
  }
};

inline std::optional<Hello> parse_hello(std::string_view payload, std::string* error) {
  auto j = detail::parse_object(payload, "HELLO", error);
  if (!j) return std::nullopt;
  Hello h;
  std::int64_t protocol = 0, uptime = 0;
  if (!detail::read_int(*j, "protocol", 0, INT32_MAX, true, protocol, "HELLO", error) ||
      !detail::read_int(*j, "uptime_ms", 0, INT64_MAX, false, uptime, "HELLO", error)) {
    return std::nullopt;
  }
  auto agent = j->find("agent");
  auto kernel = j->find("kernel");
  if (agent == j->end() || !agent->is_string()) {
    if (error) *error = "HELLO.agent: expected a string";
    return std::nullopt;
  }
  h.agent = agent->get<std::string>();
  if (kernel != j->end() && kernel->is_string()) h.kernel = kernel->get<std::string>();
  if (auto boot = j->find("boot_id"); boot != j->end() && boot->is_string()) {
    h.boot_id = boot->get<std::string>();
  }
  h.protocol = static_cast<int>(protocol);
  h.uptime_ms = static_cast<std::uint64_t>(uptime);
  return h;
}

// STARTED: {"pid":N}, the process's pid inside the guest.
struct Started {
  std::int64_t pid = 0;
  std::string to_payload() const { return detail::dump({{"pid", pid}}); }
};

inline std::optional<Started> parse_started(std::string_view payload, std::string* error) {
  auto j = detail::parse_object(payload, "STARTED", error);
  if (!j) return std::nullopt;
  Started s;
  if (!detail::read_int(*j, "pid", 1, INT32_MAX, true, s.pid, "STARTED", error)) {
    return std::nullopt;
  }
  return s;
}

// EXIT: {"code":C,"signal":S}. signal is the signal that killed the process, or 0 when it
// exited by itself. code is the exit status shells report: the status passed to exit(), or
// 128 + signal when killed. A program that could not be started reports 127 (not found) or
// 126 (found but not runnable), after an ERROR frame naming it.
struct Exit {
  int code = 0;
  int signal = 0;

  static Exit exited(int status) { return Exit{status, 0}; }
  static Exit killed(int sig) { return Exit{128 + sig, sig}; }

  std::string to_payload() const {
    return detail::dump({{"code", code}, {"signal", signal}});
  }
  bool operator==(const Exit&) const = default;
};

inline std::optional<Exit> parse_exit(std::string_view payload, std::string* error) {
  auto j = detail::parse_object(payload, "EXIT", error);
  if (!j) return std::nullopt;
  std::int64_t code = 0, sig = 0;
  if (!detail::read_int(*j, "code", 0, 255, true, code, "EXIT", error) ||
      !detail::read_int(*j, "signal", 0, 127, false, sig, "EXIT", error)) {
    return std::nullopt;
  }
  return Exit{static_cast<int>(code), static_cast<int>(sig)};
}

// ERROR: {"message":"..."}, one line meant for the user.
struct ErrorMessage {
  std::string message;
  std::string to_payload() const { return detail::dump({{"message", message}}); }
};

inline std::optional<ErrorMessage> parse_error_message(std::string_view payload,
                                                       std::string* error) {
  auto j = detail::parse_object(payload, "ERROR", error);
  if (!j) return std::nullopt;
  auto m = j->find("message");
  if (m == j->end() || !m->is_string()) {
    if (error) *error = "ERROR.message: expected a string";
    return std::nullopt;
  }
  return ErrorMessage{m->get<std::string>()};
}

// SIGNAL: {"signal":N}, 1..64, delivered to the session's process with kill(2).
struct SignalRequest {
  int signal = 0;
  std::string to_payload() const { return detail::dump({{"signal", signal}}); }
};

inline std::optional<SignalRequest> parse_signal_request(std::string_view payload,
                                                         std::string* error) {
  auto j = detail::parse_object(payload, "SIGNAL", error);
  if (!j) return std::nullopt;
  std::int64_t sig = 0;
  if (!detail::reject_unknown_keys(*j, {"signal"}, "SIGNAL", error) ||
      !detail::read_int(*j, "signal", 1, 64, true, sig, "SIGNAL", error)) {
    return std::nullopt;
  }
  return SignalRequest{static_cast<int>(sig)};
}

// SHUTDOWN: {"timeout_ms":N,"signal":S}: signal S (default 15, SIGTERM) to the session
// processes, SIGTERM to the rest once they are gone, SIGKILL after timeout_ms, sync, power
// off. Both keys are optional: timeout_ms defaults to 2000 and is at most 10 minutes; S is
// 1..64 (a host stopped by Ctrl-C passes SIGINT on, as podman does).
struct ShutdownRequest {
  std::uint32_t timeout_ms = 2000;
  int signal = 15;
  std::string to_payload() const { return detail::dump({{"timeout_ms", timeout_ms}, {"signal", signal}}); }
};

inline std::optional<ShutdownRequest> parse_shutdown_request(std::string_view payload,
                                                             std::string* error) {
  ShutdownRequest r;
  if (payload.empty()) return r;
  auto j = detail::parse_object(payload, "SHUTDOWN", error);
  if (!j) return std::nullopt;
  std::int64_t t = r.timeout_ms;
  std::int64_t sig = r.signal;
  if (!detail::reject_unknown_keys(*j, {"timeout_ms", "signal"}, "SHUTDOWN", error) ||
      !detail::read_int(*j, "timeout_ms", 0, kMaxShutdownTimeoutMs, false, t, "SHUTDOWN", error) ||
      !detail::read_int(*j, "signal", 1, 64, false, sig, "SHUTDOWN", error)) {
    return std::nullopt;
  }
  r.timeout_ms = static_cast<std::uint32_t>(t);
  r.signal = static_cast<int>(sig);
  return r;
}

// CREDIT and STDIN_CREDIT: {"bytes":N}, 1..kMaxCreditBytes, bytes of the session's byte
// stream the receiver has consumed (see "Flow control").
struct Credit {
  std::uint32_t bytes = 0;
  std::string to_payload() const { return detail::dump({{"bytes", bytes}}); }
};

inline std::optional<Credit> parse_credit(std::string_view payload, std::string* error) {
  auto j = detail::parse_object(payload, "CREDIT", error);
  if (!j) return std::nullopt;
  std::int64_t bytes = 0;
  if (!detail::reject_unknown_keys(*j, {"bytes"}, "CREDIT", error) ||
      !detail::read_int(*j, "bytes", 1, kMaxCreditBytes, true, bytes, "CREDIT", error)) {
    return std::nullopt;
  }
  return Credit{static_cast<std::uint32_t>(bytes)};
}

// GO: {} or {"hostname":"web2"} (1-64 of [A-Za-z0-9.-], as the plan's).
struct GoRequest {
  std::optional<std::string> hostname;

  std::string to_payload() const {
    nlohmann::json j = nlohmann::json::object();
    if (hostname) j["hostname"] = *hostname;
    return detail::dump(j);
  }
};

inline std::optional<GoRequest> parse_go_request(std::string_view payload, std::string* error) {
  auto j = detail::parse_object(payload, "GO", error);
  if (!j) return std::nullopt;
  if (!detail::reject_unknown_keys(*j, {"hostname"}, "GO", error)) return std::nullopt;
  GoRequest r;
  if (auto it = j->find("hostname"); it != j->end()) {
    const bool valid = it->is_string() && !it->get_ref<const std::string&>().empty() &&
                       it->get_ref<const std::string&>().size() <= 64 &&
                       std::all_of(it->get_ref<const std::string&>().begin(),
                                   it->get_ref<const std::string&>().end(), [](char c) {
                                     return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                            (c >= '0' && c <= '9') || c == '.' || c == '-';
                                   });
    if (!valid) {
      if (error) *error = "GO.hostname: must be 1-64 characters of [A-Za-z0-9.-]";
      return std::nullopt;
    }
    r.hostname = it->get<std::string>();
  }
  return r;
}

// RESIZE (and Process.tty): {"rows":R,"cols":C}, a terminal's size in characters, 0..65535
// each (0: unknown, as a terminal reports before anyone sets it).
struct WindowSize {
  std::uint16_t rows = 24;
  std::uint16_t cols = 80;

  nlohmann::json to_json() const { return {{"rows", rows}, {"cols", cols}}; }
  std::string to_payload() const { return detail::dump(to_json()); }
  bool operator==(const WindowSize&) const = default;
};

inline std::optional<WindowSize> parse_window_size(std::string_view payload, std::string* error) {
  auto j = detail::parse_object(payload, "RESIZE", error);
  if (!j) return std::nullopt;
  std::int64_t rows = 0, cols = 0;
  if (!detail::reject_unknown_keys(*j, {"rows", "cols"}, "RESIZE", error) ||
      !detail::read_int(*j, "rows", 0, 65535, true, rows, "RESIZE", error) ||
      !detail::read_int(*j, "cols", 0, 65535, true, cols, "RESIZE", error)) {
    return std::nullopt;
  }
  return WindowSize{static_cast<std::uint16_t>(rows), static_cast<std::uint16_t>(cols)};
}

// Boot ids and entropy travel as lowercase hex.
namespace detail {
inline bool is_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}
}  // namespace detail

// Minimum entropy an ATTACH carries, in bytes.
inline constexpr std::size_t kMinAttachEntropy = 32;
// Boot ids are 16 random bytes (32 hex digits).
inline constexpr std::size_t kBootIdHexDigits = 32;

// ATTACH: {"generation":N,"wall_time_ns":T,"entropy":"<hex, 32..512 bytes>"}.
// generation: the host's count of attaches to this guest, echoed in ATTACHED so an answer
// is matched to its request. wall_time_ns: the host's CLOCK_REALTIME in ns since the epoch.
struct AttachRequest {
  std::uint64_t generation = 0;
  std::int64_t wall_time_ns = 0;
  std::string entropy_hex;

  std::string to_payload() const {
    return detail::dump({{"generation", generation}, {"wall_time_ns", wall_time_ns},
                         {"entropy", entropy_hex}});
  }
};

inline std::optional<AttachRequest> parse_attach_request(std::string_view payload,
                                                         std::string* error) {
  auto j = detail::parse_object(payload, "ATTACH", error);
  if (!j) return std::nullopt;
  std::int64_t generation = 0, wall = 0;
  if (!detail::reject_unknown_keys(*j, {"generation", "wall_time_ns", "entropy"}, "ATTACH", error) ||
      !detail::read_int(*j, "generation", 0, INT64_MAX, true, generation, "ATTACH", error) ||
      !detail::read_int(*j, "wall_time_ns", 1, INT64_MAX, true, wall, "ATTACH", error)) {
    return std::nullopt;
  }
  auto entropy = j->find("entropy");
  if (entropy == j->end() || !entropy->is_string()) {
    if (error) *error = "ATTACH.entropy: expected a hex string";
    return std::nullopt;
  }
  const auto& hex = entropy->get_ref<const std::string&>();
  if (hex.size() % 2 != 0 || hex.size() < 2 * kMinAttachEntropy || hex.size() > 1024 ||
      !detail::is_hex(hex)) {
    if (error) *error = "ATTACH.entropy: expected 32 to 512 bytes as lowercase hex";
    return std::nullopt;
  }
  return AttachRequest{static_cast<std::uint64_t>(generation), wall, hex};
}

// ATTACHED: {"generation":N,"boot_id":"<32 hex>","sessions":[ids],"uptime_ms":U}.
// sessions: the sessions whose process has not exited yet, ascending.
struct Attached {
  std::uint64_t generation = 0;
  std::string boot_id;
  std::vector<std::uint32_t> sessions;
  std::uint64_t uptime_ms = 0;

  std::string to_payload() const {
    return detail::dump({{"generation", generation}, {"boot_id", boot_id},
                         {"sessions", sessions}, {"uptime_ms", uptime_ms}});
  }
};

inline std::optional<Attached> parse_attached(std::string_view payload, std::string* error) {
  auto j = detail::parse_object(payload, "ATTACHED", error);
  if (!j) return std::nullopt;
  std::int64_t generation = 0, uptime = 0;
  if (!detail::read_int(*j, "generation", 0, INT64_MAX, true, generation, "ATTACHED", error) ||
      !detail::read_int(*j, "uptime_ms", 0, INT64_MAX, false, uptime, "ATTACHED", error)) {
    return std::nullopt;
  }
  auto boot = j->find("boot_id");
  if (boot == j->end() || !boot->is_string() ||
      boot->get_ref<const std::string&>().size() != kBootIdHexDigits ||
      !detail::is_hex(boot->get_ref<const std::string&>())) {
    if (error) *error = "ATTACHED.boot_id: expected 32 lowercase hex digits";
    return std::nullopt;
  }
  Attached a;
  a.generation = static_cast<std::uint64_t>(generation);
  a.uptime_ms = static_cast<std::uint64_t>(uptime);
  a.boot_id = boot->get<std::string>();
  auto sessions = j->find("sessions");
  if (sessions == j->end() || !sessions->is_array()) {
    if (error) *error = "ATTACHED.sessions: expected an array of session ids";
    return std::nullopt;
  }
  for (const auto& s : *sessions) {
    if (!s.is_number_unsigned() || s.get<std::uint64_t>() > UINT32_MAX) {
      if (error) *error = "ATTACHED.sessions: expected session ids";
      return std::nullopt;
    }
    a.sessions.push_back(s.get<std::uint32_t>());
  }
  return a;
}

}  // namespace fcvm::agent
