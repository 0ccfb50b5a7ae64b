// Starts a plan's or an EXEC's process: credentials, working directory, environment, PATH
// lookup like execvp, and pipes (or, for Process::tty, a pseudo-terminal) for its standard
// streams.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fcvm/agent_plan.h"
#include "owned_fd.h"

namespace fcvm::agent {

// PATH used when the process environment has none (the OCI runtimes' default).
inline constexpr std::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct SpawnedProcess {
  pid_t pid = -1;
  // Pipes: stdin's write end (invalid when Process::stdin is false: /dev/null), stdout's
  // and stderr's read ends, non-blocking. A tty process: stdout_pipe is the terminal's
  // master (non-blocking; both streams arrive there), stdin_pipe a second descriptor of
  // it (when Process::stdin), stderr_pipe invalid, and `terminal` a third, for resizes.
  OwnedFd stdin_pipe;
  OwnedFd stdout_pipe;
  OwnedFd stderr_pipe;
  OwnedFd terminal;
  // Set when the program could not be started. The child (pid) has then already exited
  // with start_exit_code and only needs reaping; start_error names the program and cause.
  std::optional<std::string> start_error;
  int start_exit_code = 0;
};

class ProcessSpawner {
 public:
  // Forks and execs `process` in a new session (setsid); a tty process gets a new
  // pseudo-terminal of Process::tty's size as its controlling terminal, owned by its uid.
  // The child gets default signal dispositions and an empty signal mask. With Process::init
  // the child is an init, PID 1 of new PID and mount namespaces, whose child is the process
  // (its exit status is the process's). Throws SetupError when the agent itself cannot
  // fork or make pipes; failures inside the child are reported through start_error.
  static SpawnedProcess spawn(const Process& process);

  // The PATH entry of an environment list, else kDefaultPath.
  static std::string search_path(const std::vector<std::string>& env);

  // Exit status for a failed exec: 127 for "not found", 126 for everything else.
  static int exit_code_for_exec_errno(int err);

  // mkdir -p for an absolute `path`, each new directory 0755 (less the umask). Stops
  // quietly at the first failure: callers find out when they use the path.
  static void make_directories(const std::string& path);
};

}  // namespace fcvm::agent
