// fc-agent's event loop: one thread, one epoll set holding the host port, a signalfd
// (SIGCHLD and the shutdown signals) and the pipes of every session's process.
//
// The host is reached through a HostChannel over a HostLink (virtio-serial port, vsock
// listener or a connected stream); nothing here depends on which, and torn frames are the
// channel's business. ATTACH (any time) is answered with ATTACHED and resynchronises the
// guest.
//
// Lifecycle: HELLO (repeated every hello_interval) -> PLAN [-> READY, held until GO] -> the main process runs on
// session 0, EXEC adds sessions -> shutdown (main exit with shutdown_on_exit, SHUTDOWN,
// a failed plan, a protocol error, SIGTERM/SIGINT/SIGPWR) -> SIGTERM to all, SIGKILL after
// the grace period, queued frames flushed, GuestSystem::power_off().
//
// Output ordering per session: STARTED, then STDOUT/STDERR, then EXIT. When a process is
// reaped its pipes are drained of what it wrote and closed, then EXIT is sent: output that
// daemonised grandchildren write afterwards is not forwarded. A session with an output
// window (agent_protocol.h, "Flow control") drains only as fast as the host credits it, so
// its EXIT waits for the host; the agent never gives up on queued output while the host
// channel is open (the host decides when a VM has taken too long).
#pragma once

#include <csignal>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "fcvm/agent_plan.h"
#include "fcvm/agent_protocol.h"
#include "epoll_set.h"
#include "guest_system.h"
#include "host_channel.h"
#include "host_link.h"
#include "owned_fd.h"
#include "session.h"

namespace fcvm::agent {

struct AgentOptions {
  std::chrono::milliseconds hello_interval{1000};
  // While the host is not connected a virtio-serial port reports a permanent hang-up; the
  // port leaves the epoll set and is retried at this interval.
  std::chrono::milliseconds port_retry_interval{50};
  // SIGTERM -> SIGKILL delay when the main process exits or a signal asks for shutdown.
  std::chrono::milliseconds default_grace{2000};
  // After SIGKILL, how long to wait for the processes to be reaped.
  std::chrono::milliseconds reap_timeout{1000};
};

class Agent final : private HostChannel::Events {
 public:
  // `link`'s fds are non-blocking. The agent blocks SIGCHLD, SIGTERM, SIGINT, SIGHUP and
  // SIGPWR (they arrive through a signalfd) and ignores SIGPIPE. Draws the boot id.
  Agent(GuestSystem& system, HostLink link, AgentOptions options = {});
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Runs the loop; ends in system.power_off(). Internal failures are logged and lead to
  // shutdown, never to an exception out of here.
  [[noreturn]] void run();

 private:
  using Clock = std::chrono::steady_clock;

  // kHolding: a plan with "hold" is applied; the main process starts on GO.
  enum class Phase { kWaitingForPlan, kHolding, kRunning, kTerminating, kKilling, kFlushing };

  // What one read of an output pipe found.
  enum class Output { kData, kEmpty, kClosed, kNoCredit };

  // epoll tokens: low byte = kind, upper bits = session id.
  enum TokenKind : std::uint64_t { kPortToken = 1, kSignalToken = 2, kStdoutToken = 3,
                                   kStderrToken = 4, kStdinToken = 5, kListenerToken = 6 };
  static std::uint64_t token(TokenKind kind, std::uint32_t session) {
    return (static_cast<std::uint64_t>(session) << 8) | kind;
  }

  void loop_once();
  int epoll_timeout_ms(Clock::time_point now) const;
  void on_timers(Clock::time_point now);
  void advance_shutdown(Clock::time_point now);

  // HostChannel::Events.
  void on_frame(const Frame& frame) override;
  void on_connected() override;
  void on_lost(const std::string& reason, bool protocol_error) override;
  // Pauses reading output pipes while too much is queued for the host.
  void on_backlog(std::size_t pending) override;

  void send_error(std::uint32_t session, const std::string& message);
  void send_hello();

  // Frames from the host.
  void on_plan(const Frame& frame);
  void on_exec(const Frame& frame);
  void on_stdin(const Frame& frame);
  void on_stdin_eof(const Frame& frame);
  void on_signal(const Frame& frame);
  void on_shutdown(const Frame& frame);
  void on_credit(const Frame& frame);
  void on_resize(const Frame& frame);
  void on_attach(const Frame& frame);
  void on_go(const Frame& frame);

  // Sessions.
  void start_session(std::uint32_t id, const Process& process);
  // The plan's process with HOSTNAME added (the hostname is final only at GO).
  Process main_process() const;
  void on_session_output(std::uint32_t id, bool is_stderr);
  Output forward_output(Session& s, bool is_stderr, std::size_t* budget = nullptr);
  // Watches exactly the output pipes that may be read now (open, not paused, credit left,
  // process not yet reaped).
  void update_output_watches(Session& s);
  void write_stdin(Session& s);
  void credit_stdin(Session& s, std::size_t bytes, bool now);
  void close_output(Session& s, bool is_stderr);
  void finish_session(std::uint32_t id, int wait_status);
  // For a reaped session: drains its pipes as far as credit allows; once they are empty,
  // sends EXIT and ends the session. Erases `s` when it returns true.
  bool try_complete(Session& s);
  bool draining() const;
  void set_output_paused(bool paused);

  // Processes and signals.
  void on_signalfd();
  void reap_children();
  // Starts the SIGTERM → SIGKILL → power-off sequence. `sessions_only`: signal just the
  // session processes first, with `session_signal` (a host stop, like `podman stop`); the
  // rest get SIGTERM once the main process is gone.
  void begin_shutdown(std::chrono::milliseconds grace, const std::string& reason,
                      bool sessions_only = false, int session_signal = SIGTERM);
  void signal_everyone(int sig);

  GuestSystem& system_;
  AgentOptions options_;
  std::string boot_id_;  // 32 hex digits, drawn once per agent start
  EpollSet epoll_;
  HostChannel channel_;  // after epoll_, which it uses
  OwnedFd signal_fd_;

  Phase phase_ = Phase::kWaitingForPlan;
  bool everyone_terminated_ = false;  // SIGTERM went to every process, not just sessions
  Plan plan_;
  bool output_paused_ = false;
  bool have_children_ = false;

  std::map<std::uint32_t, Session> sessions_;
  std::map<pid_t, std::uint32_t> session_by_pid_;

  Clock::time_point hello_at_{};
  Clock::time_point deadline_{};  // of the current shutdown phase
};

}  // namespace fcvm::agent
