// HealthMonitor: a VM's health checks (health_check.h), run from the VM's one event loop
// (supervise/container_supervisor.h) without ever blocking it.
//
// Once the container runs, the monitor probes at once and then every `interval` after the
// start of the previous probe; a probe that has not ended after `timeout` fails ("timed
// out"). A command check runs in the guest as an exec session of the loop (through
// GuestExec; exit 0 passes); a URL check is a non-blocking HttpProbe from the host. Each
// outcome goes through the HealthTracker, and the new HealthState to `on_result`.
//
// The loop watches fd() (an epoll set holding the monitor's timer and probe socket) for
// EPOLLIN and calls on_ready(); it hands every exec-session frame to on_frame() first.
//
// Threading: owned and called by the loop's thread only; on_result runs on it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fcvm/agent_plan.h>
#include <fcvm/agent_protocol.h>

#include "fcvm/log.h"
#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "health/health_check.h"

namespace fcvm {

// What the VM's loop offers components that run processes in the guest.
class GuestExec {
 public:
  virtual ~GuestExec() = default;
  // False once the container is stopping or gone: no new process may start.
  virtual bool container_running() const = 0;
  // True while the VM is paused (`fcvm pause`): probes wait, they would only time out.
  virtual bool paused() const = 0;
  // Starts `process` in the guest as a new exec session and returns its id; its frames
  // then reach the component's on_frame. Errors when the agent channel refuses the frame.
  virtual Result<std::uint32_t> start_exec(const agent::Process& process) = 0;
  // SIGKILLs the session's process; frames it sent meanwhile may still arrive.
  virtual void kill_exec(std::uint32_t session) = 0;
};

class HealthMonitor {
 public:
  using OnResult = std::function<void(const HealthState&)>;

  // `spec` must be enabled, its URL (if any) already resolved to a host address
  // (resolve_health_url). `exec_defaults` gives a command check its environment, working
  // directory and user (the container's main process). Errors: the timer or epoll set
  // cannot be created.
  static Result<std::unique_ptr<HealthMonitor>> create(HealthCheckSpec spec, agent::Process exec_defaults,
                                                       OnResult on_result, LoggerPtr log);
  ~HealthMonitor();
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // Readable (EPOLLIN) whenever on_ready() has work.
  int fd() const { return epoll_.get(); }

  // The container runs: the start period begins and the first probe starts now. `exec`
  // must outlive the monitor. Later calls are ignored.
  void start(GuestExec& exec);
  // Handles the timer (next probe, or a probe's timeout) and the probe socket.
  void on_ready();
  // Takes a frame of the current command probe's session (true); false for any other.
  bool on_frame(const agent::Frame& frame);

  // `fcvm healthcheck run`: `done` gets the outcome of the probe in flight, or of one started
  // at the loop's next turn (the next regular probe then comes an interval after it); never
  // from inside this call. False, and `done` is dropped, before start() or once the
  // container no longer runs.
  using Waiter = std::function<void(const HealthState& state, const Status& outcome)>;
  bool probe_now(Waiter done);

 private:
  HealthMonitor(HealthCheckSpec spec, agent::Process exec_defaults, OnResult on_result, LoggerPtr log);
  void begin_probe();
  // Ends the probe in flight with `outcome` and `output`, reports, schedules the next one.
  void finish(const Status& outcome, const std::string& output);
  void arm_timer(std::chrono::steady_clock::time_point when);
  void watch_probe_socket();

  HealthCheckSpec spec_;
  agent::Process exec_defaults_;
  OnResult on_result_;
  LoggerPtr log_;
  UniqueFd epoll_, timer_;
  GuestExec* exec_ = nullptr;
  std::optional<HealthTracker> tracker_;
  // The probe in flight, if any: a socket (URL) or an exec session (command).
  bool probing_ = false;
  std::chrono::steady_clock::time_point probe_started_;
  std::optional<HttpProbe> http_;
  std::optional<std::uint32_t> session_;
  std::string output_;  // the command's stdout+stderr, capped
  std::string error_;   // the agent's ERROR for the command, if any
  std::vector<Waiter> waiters_;  // probe_now callers, told when the probe in flight ends
};

}  // namespace fcvm
