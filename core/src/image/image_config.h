// ImageConfig: what an OCI image says about how to run it, read from the image's config
// blob (application/vnd.oci.image.config.v1+json, or Docker's equivalent).
//
// It keeps entrypoint and cmd apart, as the image declares them; the runtime joins them
// (argv()) after applying its own overrides.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "fcvm/result.h"

namespace fcvm {

struct ImageConfig {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;            // "KEY=VALUE", in image order
  std::string working_dir;                 // empty: "/"
  std::string user;                        // "uid[:gid]" or a name; empty: root
  std::vector<std::string> exposed_ports;  // "80/tcp", sorted
  std::vector<std::string> volumes;        // sorted
  std::map<std::string, std::string> labels;
  std::string stop_signal;
  std::string created;       // RFC 3339, as the image states it; may be empty
  std::string architecture;  // "amd64"
  std::string os;            // "linux"

  // Parses an image config blob. Missing or null fields stay empty; a field of the wrong
  // type is an error naming the field.
  static Result<ImageConfig> from_oci(std::string_view blob);

  // The command the image runs by default: entrypoint followed by cmd.
  std::vector<std::string> argv() const;
};

// fcvm's own form (snake_case keys), stored in image.json.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ImageConfig, entrypoint, cmd, env, working_dir,
                                                user, exposed_ports, volumes, labels, stop_signal,
                                                created, architecture, os)

}  // namespace fcvm
