// ContainerSupervisor: the one event loop of a VM's fcvm process, from the VMM's start to
// its exit. It owns the epoll set (epoll_set.h) and hands each event to the part that
// handles it:
//
//   the agent channel     HELLO and READY here (the plan, the startup barrier, GO); the
//                         main process's output to OutputRelay (output_relay.h), its
//                         STARTED, EXIT and ERROR to ContainerLifecycle
//                         (container_lifecycle.h: phases, stops, deadlines, the exit code),
//                         STDIN credit to MainInput or ControlServer, exec sessions' frames
//                         to the health monitor first, then to ControlServer
//   our stdin, SIGWINCH   MainInput (main_input.h)
//   our stdout, stderr    OutputRelay, while bytes wait for a slow reader
//   the control socket    ControlServer (control_server.h: exec, stop, pause, snapshot...)
//   SIGINT/SIGTERM/SIGHUP a graceful stop, the signal passed to the container
//   a phase's deadline, the VMM's exit, the watched fds, the health monitor's fd
//
// A booting guest starts in `booting`; a restored guest held at its startup barrier is
// sent GO and starts in `starting`; one that already runs its container starts in
// `running`. Flow control (agent_protocol.h, "Flow control"): every session's output is
// credited only once it left this process and STDIN is held to the agent's window, so a
// slow reader slows only its own session and nothing here grows without bound. When our
// stdout's reader goes away (`| head -1`), the container's process gets SIGPIPE, as the
// kernel would do to it, and the container stops.
//
// Threading: single-threaded; run() owns the calling thread until the VM is gone.
#pragma once

#include <csignal>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/epoll.h>

#include <fcvm/agent_plan.h>

#include "agent/agent_channel.h"
#include "control/control_protocol.h"
#include "fcvm/log.h"
#include "fcvm/unique_fd.h"
#include "fcvm/vmm.h"
#include "supervise/container_lifecycle.h"
#include "supervise/epoll_set.h"
#include "supervise/main_input.h"
#include "supervise/output_chunk.h"
#include "supervise/output_relay.h"

namespace fcvm {

class ControlServer;
class HealthMonitor;


struct SupervisorOptions {
  std::filesystem::path control_socket;  // served with the host control protocol
  std::filesystem::path output_log;      // container stdout+stderr, appended
  bool forward_output = true;            // also write to our stdout/stderr (foreground)
  bool forward_stdin = false;            // -i: our stdin feeds the main process, EOF included
  // -t: the main process runs on a guest pseudo-terminal of this size; when our stdin is
  // a terminal too, its size changes (SIGWINCH) follow.
  std::optional<agent::WindowSize> tty;
  // Cap on the container log and the console log (Config::log_max_bytes; capped_log.h).
  // 0: no cap.
  std::uint64_t log_max_bytes = 0;
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
  int stop_signal = SIGTERM;  // what a stop (`fcvm stop`, --rm's end) sends first: --stop-signal
  // Called once the container's process has started (detached runs report success here).
  std::function<void()> on_started;
  // Called on the loop's thread when the VM's vCPUs are paused (true) or resumed (false)
  // at a control request or before a stop.
  std::function<void(bool paused)> on_paused;
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
  // Output the container sent before this VM existed (a startup snapshot taken once
  // healthy, run/startup_cache.h): written to the log and our streams before any other.
  std::vector<OutputChunk> replay_output;
  // Sessions a restored guest still runs (VmOrigin::guest_sessions). Exec sessions among
  // them belonged to clients of the snapshot's host: they are killed, and new sessions are
  // numbered above them.
  std::vector<std::uint32_t> guest_sessions;
  // Keeps up to this many bytes of the main process's output for startup_output(); 0: none.
  std::size_t keep_startup_output = 0;
};

class ContainerSupervisor {
 public:
  using Phase = ContainerLifecycle::Phase;

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
  // With keep_startup_output: the main process's output so far; null once it outgrew
  // that or stop_keeping_startup_output() was called.
  const std::vector<OutputChunk>* startup_output() const { return output_ ? output_->startup_output() : nullptr; }
  void stop_keeping_startup_output() {
    if (output_) output_->stop_keeping_startup_output();
  }
  // Runs `work` once on the loop's thread between two rounds of events, never inside the
  // handling of one (where it would see half a batch of the agent's frames).
  void post(std::function<void()> work) { posted_.push_back(std::move(work)); }
  // With the VM paused by the caller (from posted work): reads and handles what the agent
  // sent before the pause, until nothing more comes for `quiet` (the VMM may still be
  // flushing its buffers).
  void drain_agent(std::chrono::milliseconds quiet);

 private:
  class HealthExec;
  // Starts the health checks once the container runs.
  void start_health();
  Status handle_agent();
  void handle_hello(const agent::Frame& frame);
  // READY: the held plan is set up; the barrier's work, then GO.
  void handle_ready();
  Status handle_signal();
  // After main-session output was written (or flushed): credits what left, stops the
  // container once our reader left, and watches the stream while bytes wait for it.
  void after_output(bool is_stderr, OutputRelay::Progress progress);
  void credit(std::uint32_t session, std::uint64_t bytes);
  void on_stdin_credit(const agent::Frame& frame);
  void watch(int fd, std::uint32_t events, std::uint64_t tag) { (void)epoll_->watch(fd, events, tag); }
  void unwatch(int fd) { epoll_->unwatch(fd); }

  Vm& vm_;
  AgentChannel& agent_;
  SupervisorOptions options_;
  LoggerPtr log_;
  std::optional<EpollSet> epoll_;
  UniqueFd signals_;
  std::unique_ptr<OutputRelay> output_;  // the main process's output, once run() began
  std::optional<MainInput> input_;  // our stdin and terminal size, to the main process
  std::chrono::steady_clock::time_point next_console_cap_{};
  std::optional<ContainerLifecycle> lifecycle_;  // phases, stop and outcome, once run() began
  std::unique_ptr<ControlServer> control_;       // the control socket, once run() began
  std::unique_ptr<HealthExec> health_exec_;  // the health monitor's way into the guest
  std::deque<std::function<void()>> posted_;
};

}  // namespace fcvm
