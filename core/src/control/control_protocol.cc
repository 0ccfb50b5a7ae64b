#include "control/control_protocol.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace fcvm::control {
namespace {

using nlohmann::json;

void put_le32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint32_t get_le32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<std::uint32_t>(u[0]) | (static_cast<std::uint32_t>(u[1]) << 8) |
         (static_cast<std::uint32_t>(u[2]) << 16) | (static_cast<std::uint32_t>(u[3]) << 24);
}

std::optional<Sender> sender_of(std::uint8_t raw) {
  switch (static_cast<MessageType>(raw)) {
    case MessageType::kRequest:
    case MessageType::kStdin:
    case MessageType::kStdinEof:
    case MessageType::kResize: return Sender::client;
    case MessageType::kReply:
    case MessageType::kStdout:
    case MessageType::kStderr:
    case MessageType::kExit: return Sender::server;
  }
  return std::nullopt;
}

bool is_byte_stream(MessageType type) {
  return type == MessageType::kStdin || type == MessageType::kStdout || type == MessageType::kStderr;
}

// Never throws: invalid UTF-8 (a guest's error text) becomes U+FFFD.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Status invalid(std::string_view what, const std::string& why) {
  return error(Errc::invalid_argument, std::string(what) + ": " + why);
}

Result<json> parse_object(std::string_view payload, std::string_view what) {
  json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid(what, "not valid JSON");
  if (!j.is_object()) return invalid(what, "expected a JSON object");
  return j;
}

// Field readers: absent fields leave `out` alone unless required.
Status read_string(const json& obj, const char* key, std::string_view what, bool required,
                   std::optional<std::string>& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return required ? invalid(what, std::string(key) + " is missing") : ok_status();
  if (!it->is_string()) return invalid(what, std::string(key) + " must be a string");
  out = it->get<std::string>();
  return ok_status();
}

Status read_strings(const json& obj, const char* key, std::string_view what,
                    std::vector<std::string>& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return ok_status();
  if (!it->is_array()) return invalid(what, std::string(key) + " must be an array of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) return invalid(what, std::string(key) + " must be an array of strings");
    out.push_back(v.get<std::string>());
  }
  return ok_status();
}

Status read_int(const json& obj, const char* key, std::string_view what, std::int64_t lo,
                std::int64_t hi, bool required, std::int64_t& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return required ? invalid(what, std::string(key) + " is missing") : ok_status();
  const bool fits = it->is_number_unsigned() ? it->get<std::uint64_t>() <= static_cast<std::uint64_t>(hi)
                                             : it->is_number_integer();
  if (!fits || it->get<std::int64_t>() < lo || it->get<std::int64_t>() > hi) {
    return invalid(what, std::string(key) + " must be an integer from " + std::to_string(lo) +
                             " to " + std::to_string(hi));
  }
  out = it->get<std::int64_t>();
  return ok_status();
}

Status reject_unknown(const json& obj, std::initializer_list<std::string_view> known, std::string_view what) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
      return invalid(what, "unknown field '" + it.key() + "'");
    }
  }
  return ok_status();
}

Status check_version(const json& obj, std::string_view what) {
  std::int64_t version = 0;
  FCVM_RETURN_IF_ERROR(read_int(obj, "version", what, 0, INT32_MAX, true, version));
  if (version != kVersion) {
    return error(Errc::invalid_argument, std::string(what) + ": protocol version " +
                                             std::to_string(version) + ", but this fcvm speaks " +
                                             std::to_string(kVersion) +
                                             "; use the fcvm binary that started the VM");
  }
  return ok_status();
}

}  // namespace

Status append_message(std::string& out, MessageType type, std::string_view payload) {
  if (payload.size() > kMaxPayload && !is_byte_stream(type)) {
    return error(Errc::invalid_argument, "control message of " + std::to_string(payload.size()) +
                                             " bytes exceeds the 1 MiB limit");
  }
  do {
    const auto chunk = payload.substr(0, kMaxPayload);
    put_le32(out, static_cast<std::uint32_t>(chunk.size()));
    out.push_back(static_cast<char>(type));
    out.append(chunk);
    payload.remove_prefix(chunk.size());
  } while (!payload.empty());
  return ok_status();
}

Status MessageDecoder::feed(std::string_view bytes, std::vector<Message>& out) {
  if (failed()) return error(Errc::protocol, error_);
  buffer_.append(bytes);
  std::size_t pos = 0;
  while (buffer_.size() - pos >= kHeaderSize) {
    const std::uint32_t length = get_le32(buffer_.data() + pos);
    const auto raw = static_cast<std::uint8_t>(buffer_[pos + 4]);
    auto sender = sender_of(raw);
    if (!sender) {
      error_ = "unknown control message type " + std::to_string(raw);
    } else if (*sender != from_) {
      error_ = "control message type " + std::to_string(raw) + " is not valid in this direction";
    } else if (length > kMaxPayload) {
      error_ = "control message of " + std::to_string(length) + " bytes exceeds the 1 MiB limit";
    }
    if (failed()) break;
    if (buffer_.size() - pos - kHeaderSize < length) break;
    out.push_back(Message{static_cast<MessageType>(raw), buffer_.substr(pos + kHeaderSize, length)});
    pos += kHeaderSize + length;
  }
  buffer_.erase(0, pos);
  if (!failed()) return ok_status();
  buffer_.clear();
  return error(Errc::protocol, error_);
}

namespace {

json to_json(const TerminalSize& size) { return {{"rows", size.rows}, {"cols", size.cols}}; }

Result<TerminalSize> terminal_size_from(const json& j, std::string_view what) {
  if (!j.is_object()) return invalid(what, "expected {\"rows\":R,\"cols\":C}");
  FCVM_RETURN_IF_ERROR(reject_unknown(j, {"rows", "cols"}, what));
  std::int64_t rows = 0, cols = 0;
  FCVM_RETURN_IF_ERROR(read_int(j, "rows", what, 0, 65535, true, rows));
  FCVM_RETURN_IF_ERROR(read_int(j, "cols", what, 0, 65535, true, cols));
  return TerminalSize{static_cast<std::uint16_t>(rows), static_cast<std::uint16_t>(cols)};
}

}  // namespace

std::string to_payload(const TerminalSize& size) { return dump(to_json(size)); }

Result<TerminalSize> parse_terminal_size(std::string_view payload) {
  auto j = parse_object(payload, "resize");
  if (!j) return j.status();
  return terminal_size_from(*j, "resize");
}

std::string to_payload(const Request& request) {
  json j = {{"version", kVersion}};
  if (const auto* exec = std::get_if<ExecRequest>(&request)) {
    j["request"] = "exec";
    j["args"] = exec->args;
    if (!exec->env.empty()) j["env"] = exec->env;
    if (exec->workdir) j["workdir"] = *exec->workdir;
    if (exec->user) j["user"] = *exec->user;
    j["stdin"] = exec->stdin;
    if (exec->tty) j["tty"] = to_json(*exec->tty);
  } else if (const auto* stop = std::get_if<StopRequest>(&request)) {
    j["request"] = "stop";
    j["timeout_ms"] = stop->timeout_ms;
  } else if (std::holds_alternative<PauseRequest>(request)) {
    j["request"] = "pause";
  } else if (std::holds_alternative<ResumeRequest>(request)) {
    j["request"] = "resume";
  } else if (std::holds_alternative<HealthcheckRequest>(request)) {
    j["request"] = "healthcheck";
  } else {
    const auto& snapshot = std::get<SnapshotRequest>(request);
    j["request"] = "snapshot";
    j["tag"] = snapshot.tag;
    j["disk_only"] = snapshot.disk_only;
  }
  return dump(j);
}

Result<Request> parse_request(std::string_view payload) {
  auto j = parse_object(payload, "control request");
  if (!j) return j.status();
  FCVM_RETURN_IF_ERROR(check_version(*j, "control request"));
  std::optional<std::string> kind;
  FCVM_RETURN_IF_ERROR(read_string(*j, "request", "control request", true, kind));
  if (*kind == "exec") {
    ExecRequest r;
    FCVM_RETURN_IF_ERROR(
        reject_unknown(*j, {"version", "request", "args", "env", "workdir", "user", "stdin", "tty"}, "exec"));
    FCVM_RETURN_IF_ERROR(read_strings(*j, "args", "exec", r.args));
    if (r.args.empty()) return invalid("exec", "args must name a command");
    FCVM_RETURN_IF_ERROR(read_strings(*j, "env", "exec", r.env));
    FCVM_RETURN_IF_ERROR(read_string(*j, "workdir", "exec", false, r.workdir));
    FCVM_RETURN_IF_ERROR(read_string(*j, "user", "exec", false, r.user));
    if (auto it = j->find("stdin"); it != j->end()) {
      if (!it->is_boolean()) return invalid("exec", "stdin must be true or false");
      r.stdin = it->get<bool>();
    }
    if (auto it = j->find("tty"); it != j->end()) {
      auto size = terminal_size_from(*it, "exec.tty");
      if (!size) return size.status();
      r.tty = *size;
    }
    return Request{std::move(r)};
  }
  if (*kind == "stop") {
    StopRequest r;
    std::int64_t timeout = r.timeout_ms;
    FCVM_RETURN_IF_ERROR(reject_unknown(*j, {"version", "request", "timeout_ms"}, "stop"));
    FCVM_RETURN_IF_ERROR(read_int(*j, "timeout_ms", "stop", 0, 600000, false, timeout));
    r.timeout_ms = static_cast<std::uint32_t>(timeout);
    return Request{r};
  }
  if (*kind == "pause" || *kind == "resume") {
    FCVM_RETURN_IF_ERROR(reject_unknown(*j, {"version", "request"}, *kind));
    return *kind == "pause" ? Request{PauseRequest{}} : Request{ResumeRequest{}};
  }
  if (*kind == "snapshot") {
    SnapshotRequest r;
    FCVM_RETURN_IF_ERROR(reject_unknown(*j, {"version", "request", "tag", "disk_only"}, "snapshot"));
    std::optional<std::string> tag;
    FCVM_RETURN_IF_ERROR(read_string(*j, "tag", "snapshot", true, tag));
    if (tag->empty()) return invalid("snapshot", "tag must not be empty");
    r.tag = *tag;
    if (auto it = j->find("disk_only"); it != j->end()) {
      if (!it->is_boolean()) return invalid("snapshot", "disk_only must be true or false");
      r.disk_only = it->get<bool>();
    }
    return Request{std::move(r)};
  }
  if (*kind == "healthcheck") {
    FCVM_RETURN_IF_ERROR(reject_unknown(*j, {"version", "request"}, "healthcheck"));
    return Request{HealthcheckRequest{}};
  }
  return invalid("control request",
                 "unknown request '" + *kind + "' (this fcvm knows exec, stop, pause, resume, snapshot, healthcheck)");
}

std::string to_payload(const Reply& reply) {
  json j = {{"version", kVersion}, {"ok", reply.ok()}};
  if (reply.error) j["error"] = *reply.error;
  if (reply.snapshot) j["snapshot"] = {{"tag", reply.snapshot->tag}, {"pause_ms", reply.snapshot->pause_ms}};
  return dump(j);
}

Result<Reply> parse_reply(std::string_view payload) {
  auto j = parse_object(payload, "control reply");
  if (!j) return j.status();
  FCVM_RETURN_IF_ERROR(check_version(*j, "control reply"));
  auto ok = j->find("ok");
  if (ok == j->end() || !ok->is_boolean()) return invalid("control reply", "ok must be true or false");
  Reply r;
  if (!ok->get<bool>()) {
    FCVM_RETURN_IF_ERROR(read_string(*j, "error", "control reply", true, r.error));
  }
  if (auto it = j->find("snapshot"); it != j->end()) {
    if (!it->is_object()) return invalid("control reply", "snapshot must be an object");
    std::optional<std::string> tag;
    std::int64_t pause_ms = 0;
    FCVM_RETURN_IF_ERROR(read_string(*it, "tag", "control reply snapshot", true, tag));
    FCVM_RETURN_IF_ERROR(read_int(*it, "pause_ms", "control reply snapshot", 0, INT64_MAX, true, pause_ms));
    r.snapshot = SnapshotTaken{*tag, static_cast<std::uint64_t>(pause_ms)};
  }
  return r;
}

std::string to_payload(const ExitReport& exit) {
  return dump({{"code", exit.code}, {"signal", exit.signal}});
}

Result<ExitReport> parse_exit_report(std::string_view payload) {
  auto j = parse_object(payload, "exit report");
  if (!j) return j.status();
  std::int64_t code = 0, sig = 0;
  FCVM_RETURN_IF_ERROR(read_int(*j, "code", "exit report", 0, 255, true, code));
  FCVM_RETURN_IF_ERROR(read_int(*j, "signal", "exit report", 0, 127, false, sig));
  return ExitReport{static_cast<int>(code), static_cast<int>(sig)};
}

}  // namespace fcvm::control
