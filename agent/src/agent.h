// fc-agent's event loop: one thread, one epoll set holding the host port, a signalfd
// (SIGCHLD and the shutdown signals) and the pipes of every session's process.
//
// The host is reached through a HostLink (virtio-serial port, vsock listener or a connected
// stream); nothing here depends on which. Whenever the connection drops, a partly received
// frame is discarded and a partly sent one is sent again from its start on the next
// connection. ATTACH (any time) is answered with ATTACHED and resynchronises the guest.
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
#include "guest_system.h"
#include "host_link.h"
#include "owned_fd.h"

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

class Agent {
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

  struct Session {
    std::uint32_t id = 0;
    pid_t pid = -1;
    bool started = false;  // STARTED sent; false when the program could not be run
    OwnedFd in, out, err;
    OwnedFd terminal;  // a tty process's pseudo-terminal master, for RESIZE
    std::string in_buffer;  // STDIN bytes the pipe has not taken yet
    bool in_eof = false;    // STDIN_EOF received: close once in_buffer is written
    std::uint32_t in_consumed = 0;  // STDIN bytes written or dropped, not yet credited
    bool in_watched = false;
    bool out_watched = false;
    bool err_watched = false;
    std::uint32_t window = 0;      // output window; 0: none
    std::uint64_t out_credit = 0;  // output bytes that may still be sent (with a window)
    std::optional<int> wait_status;  // reaped: EXIT follows once the pipes are drained
  };

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

  // Host port.
  void on_port_event(std::uint32_t events);
  void port_hangup();
  void on_listener();
  // Forgets a partly received frame and rewinds to the start of a partly sent one.
  void drop_torn_frames();
  void watch_port();
  void flush();
  void queue_frame(FrameType type, std::uint32_t session, std::string_view payload);
  void send_error(std::uint32_t session, const std::string& message);
  void send_hello();
  std::size_t pending() const { return out_.size() - out_offset_; }

  // Frames from the host.
  void handle_frame(const Frame& frame);
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

  void watch(int fd, std::uint32_t events, std::uint64_t tok);
  void rewatch(int fd, std::uint32_t events, std::uint64_t tok);
  void unwatch(int fd);

  GuestSystem& system_;
  AgentOptions options_;
  HostLink link_;
  std::string boot_id_;  // 32 hex digits, drawn once per agent start
  OwnedFd epoll_;
  OwnedFd signal_fd_;

  Phase phase_ = Phase::kWaitingForPlan;
  bool everyone_terminated_ = false;  // SIGTERM went to every process, not just sessions
  Plan plan_;
  FrameDecoder decoder_{Direction::kHostToGuest};
  std::string out_;  // encoded frames not yet written to the port; starts at a frame boundary
  std::size_t out_offset_ = 0;
  std::size_t frame_start_ = 0;  // start of the frame holding out_offset_
  bool port_watched_ = false;
  std::uint32_t port_events_ = 0;
  bool port_dead_ = false;  // final hang-up (dry run) or fatal write error
  bool output_paused_ = false;
  bool have_children_ = false;

  std::map<std::uint32_t, Session> sessions_;
  std::map<pid_t, std::uint32_t> session_by_pid_;

  Clock::time_point hello_at_{};
  std::optional<Clock::time_point> port_retry_at_;
  Clock::time_point deadline_{};  // of the current shutdown phase
};

}  // namespace fcvm::agent
