// /etc/hostname, /etc/hosts and /etc/resolv.conf for the container, generated from the plan
// the way podman generates them for a container.
#pragma once

#include <filesystem>
#include <string>

#include "fcvm/agent_plan.h"

namespace fcvm::agent {

class EtcFiles {
 public:
  static std::string hostname_file(const Plan& plan);
  static std::string hosts_file(const Plan& plan);
  // Empty when the plan names no DNS server: the image's file is then left alone.
  static std::string resolv_conf(const Plan& plan);

  // Writes the files under `root`/etc, each replaced atomically (a symlink such as
  // resolv.conf -> ../run/... is replaced, not followed). A read-only root is not an error:
  // returns false and leaves the image's files. Throws SetupError on other failures.
  static bool write(const Plan& plan, const std::filesystem::path& root = "/");
};

}  // namespace fcvm::agent
