// What `fcvm podman run` lets the user change about the image's process, and how the
// overrides combine with the image's config into the agent's Process.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <fcvm/agent_plan.h>
#include "fcvm/result.h"
#include "image/image_config.h"

namespace fcvm {

struct ProcessOverrides {
  std::optional<std::string> entrypoint;  // --entrypoint: a word, or a JSON array of words
  std::vector<std::string> args;          // CMD [ARG...] after the image
  std::vector<std::string> env;           // -e K=V or -e K (taken from `host_env`), in order
  std::vector<std::filesystem::path> env_files;  // --env-file, applied before -e
  std::optional<std::string> workdir;     // -w
  std::optional<std::string> user;        // -u UID[:GID] or NAME[:GROUP]
};

// Resolves the process to run. `rootfs` is the image's unpacked root (for user and group
// names in /etc/passwd and /etc/group). `host_env` looks up a host variable for `-e K`.
// Errors (invalid_argument) name the bad flag: an unknown user, an empty command, a
// malformed env file line.
Result<agent::Process> resolve_process(const ImageConfig& image, const ProcessOverrides& overrides,
                                       const std::filesystem::path& rootfs,
                                       const char* (*host_env)(const char*));

}  // namespace fcvm
