// ContainerLifecycle: the phases of one container run in its VM, how it stops and what it
// ends with: the exit path of ContainerSupervisor, fed by the loop with what the agent
// reports and what the host asks (signals, control requests).
//
//   booting   waiting for the agent's HELLO (boot deadline)
//   starting  the plan is sent; waiting for the container's process to start
//   running   relaying output, serving `fcvm exec`; may be paused and resumed
//   stopping  the container exited or a stop was asked; waiting for the power-off (a
//             deadline too: the guest gets its grace and a little more)
//
// A stop asked while booting or starting (SIGINT, `fcvm stop`) is sent once the container
// runs; a second stop kills the VM at once; a paused guest is resumed first, since it
// cannot stop its container. The run's outcome is the container's exit code (128+N when
// killed by signal N, as the agent reports it), else the first failure, else an error that
// says where the run ended.
//
// Threading: the loop's thread. Nothing throws.
#pragma once

#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "agent/agent_channel.h"
#include "fcvm/log.h"
#include "fcvm/result.h"
#include "fcvm/vmm.h"

namespace fcvm {

// Exit codes of the run itself, when there is no container exit code (as podman).
inline constexpr int kRunFailedExit = 125;

class ContainerLifecycle {
 public:
  enum class Phase { booting, starting, running, stopping };
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::chrono::milliseconds boot_timeout{60000};  // VMM start → HELLO
    std::chrono::milliseconds stop_timeout{10000};  // SIGTERM → SIGKILL inside the guest
    int stop_signal = SIGTERM;  // what a stop sends first: --stop-signal
    std::filesystem::path console_log;              // quoted when boot fails
    // Called when the VM's vCPUs are paused (true) or resumed (false).
    std::function<void(bool paused)> on_paused;
  };

  // Starts in `phase` (booting: the boot deadline runs from now). `vm` and `agent` must
  // outlive this object.
  ContainerLifecycle(Phase phase, Vm& vm, AgentChannel& agent, Options options, LoggerPtr log);

  Phase phase() const { return phase_; }
  bool paused() const { return paused_; }
  bool failed() const { return failure_.has_value(); }
  bool exit_known() const { return exit_code_.has_value(); }
  // When the current phase's wait ends (booting: HELLO; stopping: power-off), if it does.
  std::optional<Clock::time_point> deadline() const { return deadline_; }
  const Options& options() const { return options_; }

  // The agent said HELLO and was sent the plan.
  void booted();
  // The container's main process started: the container runs; a stop asked before is sent.
  void started();
  // EXIT for the main session (`payload` from the guest: a bad one is kRunFailedExit).
  void exited(std::string_view payload);
  // ERROR for the main session: while starting, why the container did not run.
  void agent_error(const std::string& message);
  // Ends the loop with `failure`; the first one wins.
  void fail(Status failure);
  // `what` went wrong while booting, with the console's last lines.
  Status boot_failure(Errc code, const std::string& what) const;

  // A stop request (signal, control socket, our output's reader gone): asks the agent to
  // stop the container (`signal`, 0: the stop signal; SIGKILL after `grace`), at once or
  // once it runs.
  void stop(std::chrono::milliseconds grace, int signal = 0);
  void stop() { stop(options_.stop_timeout); }
  // A pause or resume request: pauses or resumes the vCPUs (nothing when already so).
  Status set_paused(bool pause);

  // The deadline has passed: a guest that did not boot fails the run; one that did not
  // power off is stopped. The loop ends either way.
  void deadline_passed();
  // Once the VM is gone: the container's exit code, or why there is none.
  Result<int> outcome();

 private:
  // Sends the stop to the agent and waits `grace` and a little more for the power-off.
  void send_stop(std::chrono::milliseconds grace, int signal);

  Vm& vm_;
  AgentChannel& agent_;
  Options options_;
  LoggerPtr log_;
  Phase phase_;
  std::optional<Clock::time_point> deadline_;
  std::optional<Status> failure_;
  std::optional<int> exit_code_;
  std::optional<std::string> start_error_;
  int stop_requests_ = 0;
  bool paused_ = false;  // by a pause request
  struct PendingStop {
    std::chrono::milliseconds grace;
    int signal;
  };
  std::optional<PendingStop> pending_stop_;  // asked before the container ran
};

}  // namespace fcvm
