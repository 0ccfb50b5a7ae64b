// ContainerSupervisor: the one event loop of a VM's fcvm process, from the VMM's start to
// its exit. The VM goes through phases, each driven by events on the same epoll set (the
// agent channel, the VMM's exit, signals, the control socket, a deadline):
//
//   booting   waiting for the agent's HELLO (boot deadline); then the plan is sent
//   starting  the plan is sent; waiting for the container's process to start (a held plan:
//             the agent says READY first, the loop calls at_barrier, then sends GO)
//   running   relaying output, serving `fcvm exec`; may be paused and resumed (`fcvm pause`,
//             `unpause`) and snapshotted (`fcvm snapshot create`) on the control socket
//   stopping  the container exited or a stop was asked; waiting for the power-off
//
// A stop asked while booting or starting (SIGINT, `fcvm stop`) is sent once the container
// runs. A restored guest, which already runs its container, starts in `running`. The loop relays
// the container's output, serves the VM's control socket (control/control_protocol.h:
// `fcvm exec`, `fcvm stop`; a malformed request gets an error reply and the VM runs on),
// turns SIGINT/SIGTERM into a graceful stop, and returns the container's exit code.
//
// Threading: single-threaded; run() owns the calling thread until the VM is gone.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fcvm/agent_plan.h>

#include "agent/agent_channel.h"
#include "control/control_protocol.h"
#include "fcvm/log.h"
#include "fcvm/unique_fd.h"
#include "fcvm/vmm.h"

namespace fcvm {

class HealthMonitor;

struct SupervisorOptions {
  std::filesystem::path control_socket;  // served with the host control protocol
  std::filesystem::path output_log;      // container stdout+stderr, appended
  bool forward_output = true;            // also write to our stdout/stderr (foreground)
  agent::Process main_process;           // defaults for exec sessions (env, cwd, user)
  std::filesystem::path rootfs;          // the image rootfs, for exec --user names
  std::filesystem::path console_log;     // the guest's console, quoted when boot fails
  // The plan of a guest that boots: sent once the agent says HELLO. nullopt: the guest
  // already runs its container (a restored clone); the loop starts in `running`.
  std::optional<agent::Plan> plan;
  // A restored guest held at its startup barrier (a cached start): the loop sends this GO
  // first and starts in `starting`. Only without a plan.
  std::optional<agent::GoRequest> go;
  // Called on the loop's thread when a held plan's agent says READY, with the agent's boot
  // id (from its HELLO); GO is sent when it returns. A startup snapshot is taken here.
  std::function<void(const std::string& boot_id)> at_barrier;
  std::chrono::milliseconds boot_timeout{60000};  // VMM start → HELLO
  std::chrono::milliseconds stop_timeout{10000};  // SIGTERM → SIGKILL inside the guest
  // Called once the container's process has started (detached runs report success here).
  std::function<void()> on_started;
  // The guest agent's boot id when known before the loop (a clone's, from ATTACHED); a
  // booting guest's comes with its HELLO.
  std::string guest_boot_id;
  // More fds the loop watches for its session (EPOLLIN), each with a handler run on the
  // loop's thread; a handler returning true asks for a graceful stop (a clone whose serve
  // process died). The fds are borrowed and must outlive run().
  struct WatchedFd {
    int fd = -1;
    std::function<bool()> on_ready;
  };
  std::vector<WatchedFd> watched;
  // Takes the snapshot a control request asks for, on the loop's thread (the loop waits for
  // it; the guest is paused for most of it anyway). `paused`: the VM was paused by a pause
  // request and must stay paused. `still_wanted` turns false once the client hung up. Null:
  // snapshot requests are refused.
  std::function<Result<control::SnapshotTaken>(const control::SnapshotRequest& request, bool paused,
                                               const std::function<bool()>& still_wanted)>
      take_snapshot;
  // Health checks, started once the container runs (health/health_monitor.h); borrowed,
  // must outlive run(). Null: none.
  HealthMonitor* health = nullptr;
};

// Exit codes of the run itself, when there is no container exit code (as podman).
inline constexpr int kRunFailedExit = 125;

class ContainerSupervisor {
 public:
  enum class Phase { booting, starting, running, stopping };

  // `vm` and `agent` must outlive the supervisor.
  ContainerSupervisor(Vm& vm, AgentChannel& agent, SupervisorOptions options, LoggerPtr log);
  ~ContainerSupervisor();

  // Runs until the VM has exited. Returns the container's exit code (128+N when killed by
  // signal N), or an error when the guest did not boot (the VM exited, the agent did not
  // answer within boot_timeout: the VM may still run, its owner stops it), the container
  // never ran (invalid_argument, the agent's reason)
  // or the VM died under it.
  Result<int> run();

  // The guest agent's boot id (drawn once per agent start): what a snapshot records and its
  // clones must report. Empty before the HELLO of a booting guest.
  const std::string& guest_boot_id() const { return options_.guest_boot_id; }

 private:
  struct ControlClient;
  class HealthExec;
  // Starts the health checks once the container runs.
  void start_health();
  Status handle_agent();
  void handle_hello(const agent::Frame& frame);
  // READY: the held plan is set up; the barrier's work, then GO.
  void handle_ready();
  // Ends the loop with `failure` (the first one wins).
  void fail(Status failure);
  // `what` went wrong while booting, with the console's last lines.
  Status boot_failure(Errc code, const std::string& what) const;
  Status handle_signal();
  void accept_client();
  void handle_client(std::uint32_t session);
  void handle_request(std::uint32_t session, ControlClient& client, const std::string& payload);
  // pause, resume and snapshot requests; each finishes its client.
  void handle_vm_request(ControlClient& client, const control::Request& request);
  void relay_exec_frame(const agent::Frame& frame);
  // `fcvm healthcheck run`: replies once the health monitor's probe has ended.
  void run_health_check(std::uint32_t session, ControlClient& client);
  // Writes what the client is owed; drops it once finished and flushed.
  void flush_client(std::uint32_t session);
  void drop_client(std::uint32_t session);
  // A stop request (signal, control socket): asks the agent to stop the container
  // (SIGTERM, SIGKILL after `grace`), at once or, while booting or starting, once the
  // container runs; a second request kills the VM.
  void begin_stop(std::chrono::milliseconds grace);
  // Sends the stop to the agent and waits `grace` and a little more for the power-off.
  void send_stop(std::chrono::milliseconds grace);
  void write_output(int fd, const std::string& bytes);
  void watch(int fd, std::uint32_t events, std::uint64_t tag);

  Vm& vm_;
  AgentChannel& agent_;
  SupervisorOptions options_;
  LoggerPtr log_;
  UniqueFd epoll_, signals_, listener_, output_log_;
  std::map<std::uint32_t, std::unique_ptr<ControlClient>> clients_;
  std::uint32_t next_session_ = 1;
  Phase phase_ = Phase::booting;
  // The current phase's deadline (booting: HELLO; stopping: power-off).
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::optional<Status> failure_;
  std::optional<int> exit_code_;
  std::optional<std::string> start_error_;
  int stop_requests_ = 0;
  bool paused_ = false;  // by a pause request
  std::optional<std::chrono::milliseconds> pending_stop_;  // asked before the container ran
  std::unique_ptr<HealthExec> health_exec_;  // the health monitor's way into the guest
};

}  // namespace fcvm
