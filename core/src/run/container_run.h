// `fcvm podman run`: a container image run as the only process of a new microVM.
#pragma once

#include "cli/command.h"
#include "run/container_request.h"

namespace fcvm {

// Pulls the image, creates the VM's disks and network, boots it, runs the container's
// process and tears everything down again. Returns the container's exit code (foreground)
// or 0 once a detached VM runs. Failures of fcvm itself throw cli::CliError with exit code
// 125, after removing everything created so far.
int run_container(cli::CommandContext& ctx, const ContainerRequest& request);

}  // namespace fcvm
