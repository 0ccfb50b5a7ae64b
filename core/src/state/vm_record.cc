#include "state/vm_record.h"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <ctime>

#include "config/config.h"

namespace fcvm {
namespace {

using nlohmann::json;

constexpr std::array<VmType, 3> kTypes = {VmType::vm, VmType::serve, VmType::clone};
constexpr std::array<VmStatus, 5> kStatuses = {VmStatus::creating, VmStatus::running,
                                               VmStatus::stopping, VmStatus::exited,
                                               VmStatus::failed};

std::string random_hex(size_t digits) {
  std::array<unsigned char, 16> bytes{};
  const size_t need = (digits + 1) / 2;
  size_t got = 0;
  while (got < need) {
    ssize_t n = ::getrandom(bytes.data() + got, need - got, 0);
    if (n < 0 && errno == EINTR) continue;
    // getrandom only fails on kernels older than 3.17, which fcvm does not support.
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < digits; ++i) {
    const unsigned char b = bytes[i / 2];
    out += kHex[(i % 2 == 0 ? b >> 4 : b) & 0xf];
  }
  return out;
}

// Reads doc[key] into `out` when present (and not null); a wrong type is an error naming
// the key. Absent keys keep `out`'s default unless `required`.
template <class T>
Status read_field(const json& doc, const char* key, T& out, bool required = false) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) {
    if (required) return error(Errc::invalid_argument, std::string("field '") + key + "' is missing");
    return ok_status();
  }
  try {
    out = it->get<T>();
  } catch (const json::exception& e) {
    return error(Errc::invalid_argument, std::string("field '") + key + "': " + json_error_text(e));
  }
  return ok_status();
}

template <class T>
Status read_optional(const json& doc, const char* key, std::optional<T>& out) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) {
    out.reset();
    return ok_status();
  }
  T value{};
  FCVM_RETURN_IF_ERROR(read_field(doc, key, value));
  out = std::move(value);
  return ok_status();
}

// An optional process: "<key>" (null when absent) and "<key>_start_time".
Status read_optional_process(const json& doc, const std::string& key, std::optional<ProcessIdentity>& out) {
  std::optional<pid_t> pid;
  FCVM_RETURN_IF_ERROR(read_optional(doc, key.c_str(), pid));
  out.reset();
  if (!pid) return ok_status();
  ProcessIdentity process{*pid, 0};
  FCVM_RETURN_IF_ERROR(read_field(doc, (key + "_start_time").c_str(), process.start_time, true));
  out = process;
  return ok_status();
}

Status parse_record(const json& doc, VmRecord& r) {
  if (!doc.is_object()) {
    return error(Errc::invalid_argument, std::string("expected an object, got ") + doc.type_name());
  }
  int version = 0;
  FCVM_RETURN_IF_ERROR(read_field(doc, "version", version, true));
  if (version > VmRecord::kVersion) {
    return error(Errc::invalid_argument,
                 "written by a newer fcvm (record version " + std::to_string(version) +
                     ", this fcvm reads up to " + std::to_string(VmRecord::kVersion) +
                     "); use that fcvm or upgrade this one");
  }
  if (version < 1) {
    return error(Errc::invalid_argument, "bad record version " + std::to_string(version));
  }

  FCVM_RETURN_IF_ERROR(read_field(doc, "id", r.id, true));
  if (!is_valid_vm_id(r.id)) return error(Errc::invalid_argument, "bad id '" + r.id + "'");
  FCVM_RETURN_IF_ERROR(read_field(doc, "name", r.name, true));

  std::string type_text, status_text;
  FCVM_RETURN_IF_ERROR(read_field(doc, "type", type_text, true));
  const auto type = parse_vm_type(type_text);
  if (!type) return error(Errc::invalid_argument, "field 'type': unknown type '" + type_text + "'");
  r.type = *type;
  FCVM_RETURN_IF_ERROR(read_field(doc, "status", status_text, true));
  const auto status = parse_vm_status(status_text);
  if (!status) {
    return error(Errc::invalid_argument, "field 'status': unknown status '" + status_text + "'");
  }
  r.status = *status;

  FCVM_RETURN_IF_ERROR(read_field(doc, "pid", r.process.pid, true));
  FCVM_RETURN_IF_ERROR(read_field(doc, "pid_start_time", r.process.start_time, true));
  FCVM_RETURN_IF_ERROR(read_optional_process(doc, "serve_pid", r.serve));
  FCVM_RETURN_IF_ERROR(read_optional_process(doc, "vmm_pid", r.vmm));

  FCVM_RETURN_IF_ERROR(read_field(doc, "snapshot", r.snapshot));
  FCVM_RETURN_IF_ERROR(read_field(doc, "image", r.image));

  std::map<std::string, std::string> plugins;
  FCVM_RETURN_IF_ERROR(read_field(doc, "plugins", plugins));
  for (const auto& [kind_text, name] : plugins) {
    const auto kind = parse_plugin_kind(kind_text);
    if (!kind) {
      return error(Errc::invalid_argument, "field 'plugins': unknown kind '" + kind_text + "'");
    }
    r.plugins[*kind] = name;
  }

  FCVM_RETURN_IF_ERROR(read_optional(doc, "network", r.network));
  FCVM_RETURN_IF_ERROR(read_optional(doc, "disk", r.disk));
  std::string vm_dir;
  FCVM_RETURN_IF_ERROR(read_field(doc, "vm_dir", vm_dir));
  r.vm_dir = vm_dir;
  FCVM_RETURN_IF_ERROR(read_field(doc, "created", r.created));
  FCVM_RETURN_IF_ERROR(read_optional(doc, "exit_code", r.exit_code));
  FCVM_RETURN_IF_ERROR(read_field(doc, "error", r.error));
  if (auto health = doc.find("health"); health != doc.end() && !health->is_null()) {
    auto state = health_state_from_json(*health);
    if (!state) return state.status();
    r.health = std::move(*state);
  }
  if (auto paused = doc.find("paused"); paused != doc.end()) {  // absent in older records
    if (!paused->is_boolean()) return error(Errc::invalid_argument, "field 'paused': expected a boolean");
    r.paused = paused->get<bool>();
  }
  FCVM_RETURN_IF_ERROR(read_field(doc, "extra", r.extra));
  if (!r.extra.is_object()) return error(Errc::invalid_argument, "field 'extra': expected an object");
  return ok_status();
}

}  // namespace

const char* to_string(VmType type) noexcept {
  switch (type) {
    case VmType::vm: return "vm";
    case VmType::serve: return "serve";
    case VmType::clone: return "clone";
  }
  return "vm";
}

const char* to_string(VmStatus status) noexcept {
  switch (status) {
    case VmStatus::creating: return "creating";
    case VmStatus::running: return "running";
    case VmStatus::stopping: return "stopping";
    case VmStatus::exited: return "exited";
    case VmStatus::failed: return "failed";
  }
  return "failed";
}

std::optional<VmType> parse_vm_type(std::string_view text) noexcept {
  for (auto t : kTypes) {
    if (text == to_string(t)) return t;
  }
  return std::nullopt;
}

std::optional<VmStatus> parse_vm_status(std::string_view text) noexcept {
  for (auto s : kStatuses) {
    if (text == to_string(s)) return s;
  }
  return std::nullopt;
}

nlohmann::json to_json(const VmRecord& r) {
  json plugins = json::object();
  for (const auto& [kind, name] : r.plugins) plugins[to_string(kind)] = name;
  json doc = {
      {"version", VmRecord::kVersion},
      {"id", r.id},
      {"name", r.name},
      {"type", to_string(r.type)},
      {"status", to_string(r.status)},
      {"pid", r.process.pid},
      {"pid_start_time", r.process.start_time},
      {"serve_pid", r.serve ? json(r.serve->pid) : json()},
      {"serve_pid_start_time", r.serve ? json(r.serve->start_time) : json()},
      {"vmm_pid", r.vmm ? json(r.vmm->pid) : json()},
      {"vmm_pid_start_time", r.vmm ? json(r.vmm->start_time) : json()},
      {"snapshot", r.snapshot},
      {"image", r.image},
      {"plugins", std::move(plugins)},
      {"network", r.network ? json(*r.network) : json()},
      {"disk", r.disk ? json(*r.disk) : json()},
      {"vm_dir", r.vm_dir.string()},
      {"created", r.created},
      {"exit_code", r.exit_code ? json(*r.exit_code) : json()},
      {"error", r.error},
      {"health", r.health ? to_json(*r.health) : json()},
      {"paused", r.paused},
      {"extra", r.extra.is_object() ? r.extra : json::object()},
  };
  return doc;
}

Result<VmRecord> vm_record_from_json(const nlohmann::json& doc) {
  VmRecord r;
  Status st = parse_record(doc, r);
  if (!st.ok()) return st;
  return r;
}

Status validate_vm_name(std::string_view name) {
  const auto bad = [&](const std::string& why) {
    return error(Errc::invalid_argument,
                 "invalid name '" + std::string(name) + "': " + why +
                     "; a name is 1-63 characters from a-z, 0-9, '_', '.', '-', starting "
                     "with a letter or digit");
  };
  if (name.empty()) return bad("it is empty");
  if (name.size() > 63) return bad("it is " + std::to_string(name.size()) + " characters long");
  const auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_or_digit(name.front())) return bad("it must start with a lowercase letter or digit");
  for (char c : name) {
    if (!lower_or_digit(c) && c != '_' && c != '.' && c != '-') {
      return bad(std::string("'") + c + "' is not allowed");
    }
  }
  return ok_status();
}

bool is_valid_vm_id(std::string_view id) noexcept {
  if (id.size() != 12) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string random_vm_id() { return random_hex(12); }
std::string random_vm_name() { return "fcvm-" + random_hex(6); }

std::string now_rfc3339() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

}  // namespace fcvm
