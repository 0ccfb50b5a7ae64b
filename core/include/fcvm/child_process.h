// ChildProcess: sole owner of a spawned child process (VMMs, slirp4netns, host tools).
//
// Threading: an object is used from one thread at a time. The destructor kills (SIGKILL)
// and reaps a child that is still running, so no path leaks a process; call detach() to
// let a child outlive its owner on purpose.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "fcvm/visibility.h"

namespace fcvm {

struct FCVM_SDK_API ExitStatus {
  int code = 0;    // exit status when the child exited
  int signal = 0;  // the signal that killed it, else 0

  bool success() const { return code == 0 && signal == 0; }
  // "exit code 3" / "killed by signal 9 (Killed)"
  std::string describe() const;
};

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  // Extra "KEY=VALUE" entries on top of the parent's environment.
  std::vector<std::string> env_add;
  std::filesystem::path cwd;  // empty: inherit
  // Child's stdin/stdout/stderr: -1 means /dev/null. The fds are dup'ed, not taken.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  // Namespace files (/proc/PID/ns/user, /run/netns/NAME, ...) joined in order before exec.
  std::vector<std::filesystem::path> namespaces;
  // SIGKILL the child when the spawning thread dies (PR_SET_PDEATHSIG).
  bool die_with_parent = true;
  // Put the child in its own session (setsid) so terminal signals do not reach it.
  bool new_session = false;
};

class FCVM_SDK_API ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(ChildProcess&&) noexcept;
  ChildProcess& operator=(ChildProcess&&) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  // Starts the child. Fails (nothing left running) when fork fails, a namespace cannot be
  // joined, or exec fails; the message names the program and, for a missing program, says
  // so ("qemu-system-x86_64: not found in PATH").
  static Result<ChildProcess> spawn(const SpawnOptions& options);

  bool valid() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // A pidfd: readable (EPOLLIN) once the child has exited. Owned by this object.
  int pidfd() const { return pidfd_.get(); }

  // Reaps the child if it has exited; nullopt while it runs. Idempotent after exit.
  std::optional<ExitStatus> try_wait();
  // Waits up to `timeout` (forever when nullopt); nullopt if still running then.
  std::optional<ExitStatus> wait(std::optional<std::chrono::milliseconds> timeout = {});
  // Sends `sig` unless the child was already reaped (then a no-op).
  Status signal(int sig);
  // SIGKILL + reap. Idempotent.
  ExitStatus kill();
  // Gives up ownership: the child keeps running and is no longer killed or reaped here.
  void detach();

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  std::optional<ExitStatus> exit_;
};

// Runs a command to completion and returns its stdout. A non-zero exit is an error whose
// message holds the command name and the last line of its stderr.
FCVM_SDK_API Result<std::string> run_command(const std::vector<std::string>& argv,
                                             const std::filesystem::path& cwd = {});

}  // namespace fcvm
