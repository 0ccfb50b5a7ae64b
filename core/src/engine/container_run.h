// `fcvm podman run` in core: an image's process run as the only process of a new microVM,
// in the foreground or detached, through one VmSession.
#pragma once

#include "engine/container_request.h"
#include "session/vm_session.h"

namespace fcvm {

struct ContainerOutcome {
  std::string name;  // the VM's name (a detached run prints it)
  int exit_code = 0;  // the container's (foreground); 0 once a detached VM runs
};

// Pulls the image, resolves the process, then runs the VM through a VmSession with
// `backends`. Detached (request.detach): forks a child in its own session that owns the VM
// and returns once the container runs, or with the child's failure. Failures of the run
// itself (bad name, missing kernel, image, VMM trouble) are errors; everything created is
// removed by then. Blocks SIGINT/SIGTERM/SIGHUP in this process: the VM's event loop
// receives them.
// Runs `session` from `origin` in a child process of its own session (setsid) and returns
// once the VM's process reports started (0), or with the child's failure. The caller has
// blocked SIGINT/SIGTERM/SIGHUP.
Result<int> run_detached(VmSession& session, VmOrigin& origin);

// Blocks SIGINT/SIGTERM/SIGHUP (the VM's event loop reads them) and ignores SIGPIPE.
void block_stop_signals();

Result<ContainerOutcome> run_container(const ContainerRequest& request, SessionServices services,
                                       SessionBackends backends);

}  // namespace fcvm
