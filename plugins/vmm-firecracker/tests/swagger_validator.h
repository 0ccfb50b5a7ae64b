// SwaggerValidator: checks JSON request bodies against the schemas of a Swagger 2.0 API
// description (here Firecracker's firecracker.yaml), for the contract tests and the fake
// Firecracker.
//
// Checked: $ref to #/definitions, type (object, array, string, integer, number, boolean),
// enum, required, properties, additionalProperties (an object accepts only its declared
// properties unless additionalProperties says otherwise), items, minimum and maximum.
#pragma once

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace fcvm::firecracker::testing {

class SwaggerValidator {
 public:
  // Loads the description; throws YAML::Exception on a file that does not parse.
  static SwaggerValidator load(const std::filesystem::path& yaml);

  // The body schema of `method` (any case) on `path_template` ("/drives/{drive_id}"), or
  // nullopt when the operation does not exist. An operation without a body parameter
  // gives a null node (IsNull()).
  std::optional<YAML::Node> body_schema(const std::string& method, const std::string& path_template) const;
  // Whether the body parameter of that operation is required.
  bool body_required(const std::string& method, const std::string& path_template) const;

  // Problems of `body` as the body of that operation, one line each ("$.drive_id: ...");
  // empty when it conforms.
  std::vector<std::string> check_request(const std::string& method, const std::string& path_template,
                                         const nlohmann::json& body) const;

  // Problems of `value` against `schema`, paths under `where`.
  std::vector<std::string> check(const YAML::Node& schema, const nlohmann::json& value,
                                 const std::string& where = "$") const;

  // The path template of the description matching a concrete request path ("/drives/x" ->
  // "/drives/{drive_id}"), or nullopt.
  std::optional<std::string> match_path(const std::string& path) const;

 private:
  YAML::Node resolve(const YAML::Node& schema) const;
  void check_into(const YAML::Node& schema, const nlohmann::json& value, const std::string& where,
                  std::vector<std::string>& problems) const;
  YAML::Node operation(const std::string& method, const std::string& path_template) const;

  YAML::Node root_;
};

}  // namespace fcvm::firecracker::testing
