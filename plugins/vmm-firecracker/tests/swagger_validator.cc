#include "swagger_validator.h"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace fcvm::firecracker::testing {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool type_matches(const std::string& type, const nlohmann::json& v) {
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "string") return v.is_string();
  if (type == "integer") return v.is_number_integer();
  if (type == "number") return v.is_number();
  if (type == "boolean") return v.is_boolean();
  return false;
}

// YAML scalars are untyped text; an enum entry matches when a JSON scalar prints the same.
bool enum_matches(const YAML::Node& values, const nlohmann::json& v) {
  const std::string text = v.is_string() ? v.get<std::string>() : v.dump();
  for (const auto& e : values) {
    if (e.IsScalar() && e.Scalar() == text) return true;
  }
  return false;
}

std::string as_text(const YAML::Node& values) {
  std::string out;
  for (const auto& e : values) out += (out.empty() ? "" : ", ") + e.Scalar();
  return out;
}

}  // namespace

SwaggerValidator SwaggerValidator::load(const std::filesystem::path& yaml) {
  SwaggerValidator v;
  v.root_ = YAML::LoadFile(yaml.string());
  return v;
}

YAML::Node SwaggerValidator::resolve(const YAML::Node& schema) const {
  YAML::Node node = schema;
  for (int depth = 0; depth < 16 && node.IsMap() && node["$ref"]; ++depth) {
    const std::string ref = node["$ref"].as<std::string>();
    const std::string prefix = "#/definitions/";
    if (ref.rfind(prefix, 0) != 0) throw std::runtime_error("unsupported $ref " + ref);
    YAML::Node target = root_["definitions"][ref.substr(prefix.size())];
    if (!target) throw std::runtime_error("dangling $ref " + ref);
    node = target;
  }
  return node;
}

YAML::Node SwaggerValidator::operation(const std::string& method, const std::string& path_template) const {
  YAML::Node path = root_["paths"][path_template];
  if (!path) return YAML::Node();
  return path[lower(method)];
}

std::optional<YAML::Node> SwaggerValidator::body_schema(const std::string& method,
                                                        const std::string& path_template) const {
  YAML::Node op = operation(method, path_template);
  if (!op || op.IsNull()) return std::nullopt;
  for (const auto& p : op["parameters"]) {
    if (p["in"] && p["in"].as<std::string>() == "body") return p["schema"];
  }
  return YAML::Node();
}

bool SwaggerValidator::body_required(const std::string& method, const std::string& path_template) const {
  YAML::Node op = operation(method, path_template);
  if (!op || op.IsNull()) return false;
  for (const auto& p : op["parameters"]) {
    if (p["in"] && p["in"].as<std::string>() == "body") {
      return p["required"] && p["required"].as<bool>();
    }
  }
  return false;
}

std::optional<std::string> SwaggerValidator::match_path(const std::string& path) const {
  auto split = [](const std::string& s) {
    std::vector<std::string> parts;
    std::stringstream in(s);
    for (std::string part; std::getline(in, part, '/');) parts.push_back(part);
    return parts;
  };
  const auto want = split(path);
  for (const auto& entry : root_["paths"]) {
    const std::string candidate = entry.first.as<std::string>();
    const auto parts = split(candidate);
    if (parts.size() != want.size()) continue;
    bool same = true;
    for (size_t i = 0; i < parts.size() && same; ++i) {
      const bool param = !parts[i].empty() && parts[i].front() == '{';
      same = param ? !want[i].empty() : parts[i] == want[i];
    }
    if (same) return candidate;
  }
  return std::nullopt;
}

std::vector<std::string> SwaggerValidator::check_request(const std::string& method,
                                                         const std::string& path_template,
                                                         const nlohmann::json& body) const {
  auto schema = body_schema(method, path_template);
  if (!schema) return {method + " " + path_template + ": no such operation in the description"};
  if (schema->IsNull()) {
    if (body.is_null()) return {};
    return {method + " " + path_template + ": the operation takes no body"};
  }
  if (body.is_null()) {
    if (body_required(method, path_template)) return {method + " " + path_template + ": body required"};
    return {};
  }
  return check(*schema, body);
}

std::vector<std::string> SwaggerValidator::check(const YAML::Node& schema, const nlohmann::json& value,
                                                 const std::string& where) const {
  std::vector<std::string> problems;
  check_into(schema, value, where, problems);
  return problems;
}

void SwaggerValidator::check_into(const YAML::Node& raw, const nlohmann::json& value,
                                  const std::string& where, std::vector<std::string>& problems) const {
  const YAML::Node schema = resolve(raw);
  if (!schema || !schema.IsMap()) return;  // an empty schema accepts anything
  if (schema["type"]) {
    const std::string type = schema["type"].as<std::string>();
    if (!type_matches(type, value)) {
      problems.push_back(where + ": expected " + type + ", got " + value.type_name() + " " + value.dump());
      return;
    }
  }
  if (schema["enum"] && !enum_matches(schema["enum"], value)) {
    problems.push_back(where + ": " + value.dump() + " is not one of [" + as_text(schema["enum"]) + "]");
  }
  if (value.is_number()) {
    if (schema["minimum"] && value.get<double>() < schema["minimum"].as<double>()) {
      problems.push_back(where + ": " + value.dump() + " is below the minimum " + schema["minimum"].Scalar());
    }
    if (schema["maximum"] && value.get<double>() > schema["maximum"].as<double>()) {
      problems.push_back(where + ": " + value.dump() + " is above the maximum " + schema["maximum"].Scalar());
    }
  }
  if (value.is_array() && schema["items"]) {
    for (size_t i = 0; i < value.size(); ++i) {
      check_into(schema["items"], value[i], where + "[" + std::to_string(i) + "]", problems);
    }
  }
  if (!value.is_object()) return;
  for (const auto& r : schema["required"]) {
    if (!value.contains(r.as<std::string>())) problems.push_back(where + ": missing required '" + r.Scalar() + "'");
  }
  const YAML::Node properties = schema["properties"];
  const YAML::Node additional = schema["additionalProperties"];
  for (const auto& [key, item] : value.items()) {
    const std::string at = where + "." + key;
    if (properties && properties[key]) {
      check_into(properties[key], item, at, problems);
    } else if (additional && additional.IsMap()) {
      check_into(additional, item, at, problems);
    } else if (!(additional && additional.IsScalar() && additional.as<bool>())) {
      problems.push_back(at + ": unknown property");
    }
  }
}

}  // namespace fcvm::firecracker::testing
