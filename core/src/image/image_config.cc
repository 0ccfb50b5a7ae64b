#include "image/image_config.h"

#include <algorithm>

namespace fcvm {
namespace {

using nlohmann::json;

// Reads `object[key]` into `out` when present and not null; `where` names it in errors.
template <class T>
Status read_field(const json& object, const char* key, const std::string& where, T& out) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return ok_status();
  try {
    out = it->get<T>();
  } catch (const json::exception&) {
    return error(Errc::protocol,
                 "image config: " + where + key + " has the wrong type (" + it->type_name() + ")");
  }
  return ok_status();
}

// ExposedPorts and Volumes are JSON objects used as sets: {"80/tcp": {}}.
Status read_key_set(const json& object, const char* key, const std::string& where,
                    std::vector<std::string>& out) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return ok_status();
  if (!it->is_object()) {
    return error(Errc::protocol, "image config: " + where + key + " is not an object");
  }
  for (const auto& item : it->items()) out.push_back(item.key());
  std::sort(out.begin(), out.end());
  return ok_status();
}

}  // namespace

Result<ImageConfig> ImageConfig::from_oci(std::string_view blob) {
  json doc = json::parse(blob, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return error(Errc::protocol, "image config: not a JSON object");
  }
  ImageConfig c;
  FCVM_RETURN_IF_ERROR(read_field(doc, "created", "", c.created));
  FCVM_RETURN_IF_ERROR(read_field(doc, "architecture", "", c.architecture));
  FCVM_RETURN_IF_ERROR(read_field(doc, "os", "", c.os));
  auto it = doc.find("config");
  if (it == doc.end() || it->is_null()) return c;  // an image may declare nothing to run
  if (!it->is_object()) return error(Errc::protocol, "image config: config is not an object");
  const json& rt = *it;
  const std::string where = "config.";
  FCVM_RETURN_IF_ERROR(read_field(rt, "Entrypoint", where, c.entrypoint));
  FCVM_RETURN_IF_ERROR(read_field(rt, "Cmd", where, c.cmd));
  FCVM_RETURN_IF_ERROR(read_field(rt, "Env", where, c.env));
  FCVM_RETURN_IF_ERROR(read_field(rt, "WorkingDir", where, c.working_dir));
  FCVM_RETURN_IF_ERROR(read_field(rt, "User", where, c.user));
  FCVM_RETURN_IF_ERROR(read_field(rt, "Labels", where, c.labels));
  FCVM_RETURN_IF_ERROR(read_field(rt, "StopSignal", where, c.stop_signal));
  FCVM_RETURN_IF_ERROR(read_key_set(rt, "ExposedPorts", where, c.exposed_ports));
  FCVM_RETURN_IF_ERROR(read_key_set(rt, "Volumes", where, c.volumes));
  return c;
}

std::vector<std::string> ImageConfig::argv() const {
  std::vector<std::string> out = entrypoint;
  out.insert(out.end(), cmd.begin(), cmd.end());
  return out;
}

}  // namespace fcvm
