#include "supervise/container_supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <utility>

#include "control/control_protocol.h"
#include "health/health_monitor.h"
#include "supervise/capped_log.h"
#include "supervise/output_relay.h"
#include "supervise/container_lifecycle.h"
#include "supervise/epoll_set.h"
#include "supervise/main_input.h"
#include "image/process_overrides.h"

namespace fcvm {
namespace {

using Clock = std::chrono::steady_clock;

enum Tag : std::uint64_t {
  kAgent = 1, kVmExit, kSignals, kListener, kStdin, kStdoutSink, kStderrSink, kHealth,
  kWatchedBase = 100, kClientBase = 1000
};

// How often the console log's size is checked against the cap.
constexpr std::chrono::seconds kConsoleCapInterval{5};

// Signals the supervisor turns into a graceful stop, and SIGWINCH when it follows our
// terminal's size; blocked so only the signalfd sees them.
sigset_t loop_signals(bool resize) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  if (resize) sigaddset(&set, SIGWINCH);
  return set;
}

}  // namespace

// One connection on the control socket: a request, then, for exec, the command's I/O. Its
// exec session in the guest has the connection's id.
struct ContainerSupervisor::ControlClient {
  UniqueFd fd;
  control::MessageDecoder decoder{control::Sender::client};
  std::string out;              // messages owed to the client, from out_offset on
  std::size_t out_offset = 0;   // compacted at half, so writing stays linear
  std::uint64_t out_written = 0;  // bytes of the stream written so far
  // Output bytes to credit once the stream has been written up to `first`.
  std::deque<std::pair<std::uint64_t, std::uint32_t>> uncredited;
  std::string stdin_held;       // STDIN received, not yet within the agent's window
  bool stdin_eof_held = false;  // STDIN_EOF received behind stdin_held
  std::uint64_t stdin_in_flight = 0;  // sent to the agent, not yet credited
  bool requested = false;     // its REQUEST came
  bool exec_running = false;  // its command went to the agent and has not exited
  bool started = false;       // the agent reported its command STARTED
  bool replied = false;       // its REPLY is queued
  bool finished = false;      // close once `out` is written

  std::size_t owed() const { return out.size() - out_offset; }
  void reply(control::Reply r) {
    if (replied) return;
    replied = true;
    (void)control::append_message(out, control::MessageType::kReply, control::to_payload(r));
  }
  // Queues a session's output; its credit is due once it has been written.
  void output(control::MessageType type, const std::string& bytes) {
    (void)control::append_message(out, type, bytes);
    uncredited.emplace_back(out_written + owed(), static_cast<std::uint32_t>(bytes.size()));
  }
  void refuse(std::string why) {
    reply(control::Reply{std::move(why)});
    finished = true;
  }
};

// The health monitor's exec sessions: ids from the control clients' counter, so the two
// never collide; frames for them go to the monitor before any client sees them.
class ContainerSupervisor::HealthExec final : public GuestExec {
 public:
  explicit HealthExec(ContainerSupervisor& supervisor) : s_(supervisor) {}
  bool container_running() const override { return s_.lifecycle_->phase() == Phase::running; }
  bool paused() const override { return s_.lifecycle_->paused(); }
  Result<std::uint32_t> start_exec(const agent::Process& process) override {
    const std::uint32_t session = s_.next_session_++;
    FCVM_RETURN_IF_ERROR(s_.agent_.send_exec(session, process));
    return session;
  }
  void kill_exec(std::uint32_t session) override { (void)s_.agent_.send_signal(session, SIGKILL); }

 private:
  ContainerSupervisor& s_;
};

ContainerSupervisor::ContainerSupervisor(Vm& vm, AgentChannel& agent, SupervisorOptions options,
                                         LoggerPtr log)
    : vm_(vm), agent_(agent), options_(std::move(options)), log_(std::move(log)) {}

ContainerSupervisor::~ContainerSupervisor() {
  if (listener_) ::unlink(options_.control_socket.c_str());
}

Result<int> ContainerSupervisor::run() {
  auto epoll = EpollSet::create();
  if (!epoll) return epoll.status();
  epoll_.emplace(std::move(*epoll));
  input_.emplace(STDIN_FILENO, options_.forward_stdin, agent_, *epoll_, kStdin);
  const sigset_t set = loop_signals(options_.tty && ::isatty(STDIN_FILENO));
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  signals_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals_) return errno_status("signalfd");
  OutputRelay::Options output;
  output.log = options_.output_log;
  output.log_max_bytes = options_.log_max_bytes;
  if (options_.forward_output) {
    output.stdout_fd = STDOUT_FILENO;
    output.stderr_fd = STDERR_FILENO;
  }
  output.keep_startup_output = options_.keep_startup_output;
  auto relay = OutputRelay::open(output, log_);
  if (!relay) return relay.status();
  output_ = std::move(*relay);

  listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const auto path = options_.control_socket.string();
  if (path.size() >= sizeof addr.sun_path) {
    return error(Errc::invalid_argument, "control socket path too long: " + path);
  }
  std::copy(path.begin(), path.end(), addr.sun_path);
  ::unlink(path.c_str());
  if (!listener_ || ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener_.get(), 16) != 0) {
    return errno_status("listen on " + path);
  }
  ::chmod(path.c_str(), 0600);

  watch(agent_.fd(), agent_.epoll_events(), kAgent);
  watch(vm_.exit_fd(), EPOLLIN, kVmExit);
  watch(signals_.get(), EPOLLIN, kSignals);
  watch(listener_.get(), EPOLLIN, kListener);
  for (size_t i = 0; i < options_.watched.size(); ++i) watch(options_.watched[i].fd, EPOLLIN, kWatchedBase + i);
  if (options_.health) watch(options_.health->fd(), EPOLLIN, kHealth);
  ContainerLifecycle::Options stages;
  stages.boot_timeout = options_.boot_timeout;
  stages.stop_timeout = options_.stop_timeout;
  stages.console_log = options_.console_log;
  stages.on_paused = options_.on_paused;
  lifecycle_.emplace(options_.plan ? Phase::booting : options_.go ? Phase::starting : Phase::running, vm_,
                     agent_, std::move(stages), log_);
  for (const auto& chunk : options_.replay_output) {
    after_output(chunk.is_stderr, output_->replay(chunk.is_stderr, chunk.bytes));
  }
  bool agent_open = true;
  if (options_.plan) {
    options_.plan->process.output_window = kOutputWindow;
    options_.plan->process.stdin = options_.forward_stdin;
    options_.plan->process.tty = options_.tty;
  } else if (options_.go) {
    // A restored guest holding at its startup barrier: the container starts now.
    if (Status st = agent_.send(agent::FrameType::kGo, agent::kMainSession, options_.go->to_payload()); !st.ok()) {
      return st;
    }
  } else {
    // A restored guest already runs its container; exec is served from here on. Credit
    // the snapshot's host never sent is lost with it: grant one window afresh (the agent
    // caps what it holds), so the main process cannot stay blocked on it.
    credit(agent::kMainSession, kOutputWindow);
    for (std::uint32_t stale : options_.guest_sessions) {
      // Guest-supplied: numbers that would wrap the host's are not taken.
      if (stale == agent::kMainSession || stale >= (1u << 30)) continue;
      (void)agent_.send_signal(stale, SIGKILL);
      next_session_ = std::max(next_session_, stale + 1);
    }
    if (options_.on_started) options_.on_started();
    start_health();
  }
  next_console_cap_ = Clock::now() + kConsoleCapInterval;
  while (!vm_.exited() && !lifecycle_->failed()) {
    if (options_.log_max_bytes > 0 && Clock::now() >= next_console_cap_) {
      if (Status st = cap_appended_file(options_.console_log, options_.log_max_bytes); !st.ok()) {
        log_->warn("console log cap: " + st.message());
      }
      next_console_cap_ = Clock::now() + kConsoleCapInterval;
    }
    const auto deadline = lifecycle_->deadline();
    auto wake = deadline;
    if (options_.log_max_bytes > 0 && (!wake || next_console_cap_ < *wake)) wake = next_console_cap_;
    int timeout_ms = -1;
    if (wake) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*wake - Clock::now());
      timeout_ms = static_cast<int>(std::clamp<long>(left.count(), 0, 60000));
    }
    epoll_event events[16];
    auto ready = epoll_->wait(events, 16, timeout_ms);
    if (!ready) return ready.status();
    const int n = *ready;
    if (deadline && Clock::now() >= *deadline) {
      lifecycle_->deadline_passed();
      break;
    }
    for (int i = 0; i < n && !lifecycle_->failed(); ++i) {
      const auto tag = events[i].data.u64;
      if (tag == kAgent && agent_open) {
        if (events[i].events & EPOLLOUT) (void)agent_.on_writable();
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
          if (Status st = handle_agent(); !st.ok()) {
            log_->warn("agent channel: " + st.message());
            agent_open = false;
            // A guest that broke the framing can be told nothing more (stop, exec): it is
            // stopped, unless its container's exit is known already.
            if (st.code() == Errc::protocol && !lifecycle_->exit_known()) {
              lifecycle_->fail(error(Errc::protocol, "the guest agent broke the protocol (" +
                                                         st.message() + "); the VM was stopped"));
              vm_.kill();
            }
          } else if (agent_.closed()) {
            agent_open = false;
          }
        }
        if (!agent_open) {
          unwatch(agent_.fd());
          if (lifecycle_->phase() == Phase::booting) {
            lifecycle_->fail(lifecycle_->boot_failure(
                Errc::io, "fc-agent channel closed before HELLO: the guest did not boot or lacks fc-agent"));
          }
        }
      } else if (tag == kSignals) {
        (void)handle_signal();
      } else if (tag == kListener) {
        accept_client();
      } else if (tag == kHealth) {
        options_.health->on_ready();
      } else if (tag == kStdin) {
        input_->on_readable();
      } else if (tag == kStdoutSink || tag == kStderrSink) {
        after_output(tag == kStderrSink, output_->flush(tag == kStderrSink));
      } else if (tag >= kWatchedBase && tag < kWatchedBase + options_.watched.size()) {
        auto& watched = options_.watched[tag - kWatchedBase];
        if (watched.on_ready()) {
          unwatch(watched.fd);
          lifecycle_->stop();
        }
      } else if (tag >= kClientBase) {
        handle_client(static_cast<std::uint32_t>(tag - kClientBase), events[i].events);
      }
    }
    // Regular files are never waited for: read them whenever the window has room.
    input_->poll();
    if (agent_open) watch(agent_.fd(), agent_.epoll_events(), kAgent);
    while (!posted_.empty() && !lifecycle_->failed()) {
      auto work = std::move(posted_.front());
      posted_.pop_front();
      work();
    }
  }
  // The VM is gone: whatever the agent wrote before powering off is still in the socket
  // (on_readable takes at most 256 KiB a call, so read until nothing is left).
  for (pollfd p{agent_.fd(), POLLIN, 0}; agent_open && !lifecycle_->failed() && !agent_.closed() &&
                                         ::poll(&p, 1, 0) > 0 && handle_agent().ok();) {
  }
  while (!clients_.empty()) drop_client(clients_.begin()->first);
  // The VM is gone: what our readers are still owed (at most a window) is written out,
  // waiting for them as any program's last writes would.
  output_->drain();
  if (Status st = cap_appended_file(options_.console_log, options_.log_max_bytes); !st.ok()) {
    log_->warn("console log cap: " + st.message());
  }

  return lifecycle_->outcome();
}

void ContainerSupervisor::drain_agent(std::chrono::milliseconds quiet) {
  for (;;) {
    pollfd p{agent_.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(quiet.count())) <= 0) return;
    // Errors and a closed channel are the loop's to see on its next round.
    if (!handle_agent().ok() || agent_.closed()) return;
  }
}

void ContainerSupervisor::start_health() {
  if (!options_.health || health_exec_) return;
  health_exec_ = std::make_unique<HealthExec>(*this);
  options_.health->start(*health_exec_);
}

void ContainerSupervisor::credit(std::uint32_t session, std::uint64_t bytes) {
  send_output_credit(agent_, session, bytes);
}

void ContainerSupervisor::after_output(bool is_stderr, OutputRelay::Progress progress) {
  if (progress.credit > 0) credit(agent::kMainSession, progress.credit);
  if (progress.reader_left) {
    // Our reader is gone (`| head -1`): what the kernel does to a writer into a closed
    // pipe, done to the container's process; then the container stops.
    log_->info("the output's reader went away; sending the container SIGPIPE and stopping it");
    (void)agent_.send_signal(agent::kMainSession, SIGPIPE);
    lifecycle_->stop();
  }
  if (const int fd = output_->poll_fd(is_stderr); fd >= 0) {
    if (output_->wants_write(is_stderr)) {
      watch(fd, EPOLLOUT, is_stderr ? kStderrSink : kStdoutSink);
    } else {
      unwatch(fd);
    }
  }
}

void ContainerSupervisor::on_stdin_credit(const agent::Frame& f) {
  std::string err;
  auto granted = agent::parse_credit(f.payload, &err);
  if (!granted) return log_->warn("agent sent a bad STDIN_CREDIT: " + err);
  if (f.session == agent::kMainSession) {
    return input_->on_credit(granted->bytes);
  }
  auto it = clients_.find(f.session);
  if (it == clients_.end()) return;
  ControlClient& c = *it->second;
  c.stdin_in_flight -= std::min<std::uint64_t>(c.stdin_in_flight, granted->bytes);
  forward_client_stdin(f.session, c);
  // Reading the client resumes once nothing is held back.
  if (c.stdin_held.empty() && !c.stdin_eof_held) handle_client(f.session);
}

void ContainerSupervisor::forward_client_stdin(std::uint32_t session, ControlClient& c) {
  const std::uint64_t room = agent::kStdinWindow - std::min<std::uint64_t>(c.stdin_in_flight, agent::kStdinWindow);
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(room, c.stdin_held.size()));
  if (n > 0) {
    (void)agent_.send_stdin(session, std::string_view(c.stdin_held).substr(0, n));
    c.stdin_held.erase(0, n);
    c.stdin_in_flight += n;
  }
  if (c.stdin_held.empty() && c.stdin_eof_held) {
    c.stdin_eof_held = false;
    (void)agent_.send_stdin_eof(session);
  }
}

Status ContainerSupervisor::handle_agent() {
  auto frames = agent_.on_readable();
  if (!frames) return frames.status();
  for (auto& f : *frames) {
    if (f.type == agent::FrameType::kHello) {
      handle_hello(f);
      continue;
    }
    if (f.type == agent::FrameType::kStdinCredit) {
      on_stdin_credit(f);
      continue;
    }
    if (f.session != agent::kMainSession) {
      if (options_.health && options_.health->on_frame(f)) continue;
      relay_exec_frame(f);
      continue;
    }
    std::string err;
    switch (f.type) {
      case agent::FrameType::kReady: handle_ready(); break;
      case agent::FrameType::kStarted:
        lifecycle_->started();
        input_->started();
        if (options_.on_started) options_.on_started();
        start_health();
        break;
      case agent::FrameType::kStdout: after_output(false, output_->relay(false, f.payload)); break;
      case agent::FrameType::kStderr: after_output(true, output_->relay(true, f.payload)); break;
      case agent::FrameType::kExit: lifecycle_->exited(f.payload); break;
      case agent::FrameType::kError:
        if (auto e = agent::parse_error_message(f.payload, &err)) lifecycle_->agent_error(e->message);
        break;
      default: break;
    }
  }
  return ok_status();
}

void ContainerSupervisor::handle_hello(const agent::Frame& frame) {
  if (lifecycle_->phase() != Phase::booting) return;  // the agent repeats HELLO until the plan arrives
  std::string why;
  auto hello = agent::parse_hello(frame.payload, &why);
  if (!hello) return lifecycle_->fail(error(Errc::protocol, "fc-agent sent a malformed HELLO: " + why));
  if (hello->protocol != agent::kProtocolVersion) {
    return lifecycle_->fail(error(Errc::protocol,
                                  "the guest agent speaks protocol " + std::to_string(hello->protocol) +
                                      " but fcvm speaks " + std::to_string(agent::kProtocolVersion) +
                                      "; rebuild the initramfs with 'fcvm setup initramfs'"));
  }
  options_.guest_boot_id = hello->boot_id;
  log_->debug("agent up: kernel " + hello->kernel + ", " + std::to_string(hello->uptime_ms) + " ms");
  if (Status st = agent_.send_plan(*options_.plan); !st.ok()) return lifecycle_->fail(st);
  lifecycle_->booted();
}

void ContainerSupervisor::handle_ready() {
  if (lifecycle_->phase() != Phase::starting || !options_.plan || !options_.plan->hold) {
    log_->warn("fc-agent sent READY for a plan that does not hold; ignored");
    return;
  }
  if (options_.at_barrier) options_.at_barrier(options_.guest_boot_id);
  if (Status st = agent_.send(agent::FrameType::kGo, agent::kMainSession, agent::GoRequest{}.to_payload()); !st.ok()) {
    lifecycle_->fail(st);
  }
}

Status ContainerSupervisor::handle_signal() {
  signalfd_siginfo info{};
  while (::read(signals_.get(), &info, sizeof info) == sizeof info) {
    if (info.ssi_signo == SIGWINCH) {
      input_->on_resize();
      continue;
    }
    log_->info(std::string("received ") + strsignal(static_cast<int>(info.ssi_signo)) +
               "; passing it to the container, which is stopped if it does not exit");
    // As podman's signal proxy: Ctrl-C reaches the container as SIGINT (exit 130).
    lifecycle_->stop(options_.stop_timeout, static_cast<int>(info.ssi_signo));
  }
  return ok_status();
}

void ContainerSupervisor::accept_client() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    const std::uint32_t session = next_session_++;
    auto client = std::make_unique<ControlClient>();
    client->fd = std::move(fd);
    watch(client->fd.get(), EPOLLIN, kClientBase + session);
    clients_.emplace(session, std::move(client));
  }
}

// Output and status of an exec'd command, from the guest (hostile: its JSON is re-parsed
// and re-encoded, never passed through).
void ContainerSupervisor::relay_exec_frame(const agent::Frame& f) {
  auto it = clients_.find(f.session);
  if (it == clients_.end()) return;
  ControlClient& c = *it->second;
  std::string err;
  switch (f.type) {
    case agent::FrameType::kStarted:
      c.started = true;
      c.reply({});
      break;
    case agent::FrameType::kStdout:
    case agent::FrameType::kStderr:
      if (c.owed() + f.payload.size() > kMaxQueuedOutput) {
        log_->warn("the guest sent exec output beyond its window; ending exec session " +
                   std::to_string(f.session));
        (void)agent_.send_signal(f.session, SIGKILL);
        drop_client(f.session);
        return;
      }
      c.output(f.type == agent::FrameType::kStdout ? control::MessageType::kStdout
                                                    : control::MessageType::kStderr,
               f.payload);
      break;
    case agent::FrameType::kError: {
      auto e = agent::parse_error_message(f.payload, &err);
      c.reply(control::Reply{e ? e->message : "the guest agent failed the command: " + err});
      break;
    }
    case agent::FrameType::kExit: {
      auto e = agent::parse_exit(f.payload, &err);
      c.reply({});
      control::ExitReport report = e ? control::ExitReport{e->code, e->signal}
                                     : control::ExitReport{kRunFailedExit, 0};
      (void)control::append_message(c.out, control::MessageType::kExit, control::to_payload(report));
      c.exec_running = false;
      c.finished = true;
      break;
    }
    default: break;
  }
  flush_client(f.session);
}

void ContainerSupervisor::handle_request(std::uint32_t session, ControlClient& c,
                                         const std::string& payload) {
  if (c.requested) return c.refuse("one request per connection");
  c.requested = true;
  auto request = control::parse_request(payload);
  if (!request) {
    log_->info("refused a control request: " + request.status().message());
    return c.refuse(request.status().message());
  }
  if (std::holds_alternative<control::HealthcheckRequest>(*request)) return run_health_check(session, c);
  if (!std::holds_alternative<control::ExecRequest>(*request) &&
      !std::holds_alternative<control::StopRequest>(*request)) {
    return handle_vm_request(c, *request);
  }
  if (const auto* stop = std::get_if<control::StopRequest>(&*request)) {
    log_->info("stop requested on the control socket");
    c.reply({});
    c.finished = true;
    lifecycle_->stop(std::chrono::milliseconds(stop->timeout_ms));
    return;
  }
  const auto& exec = std::get<control::ExecRequest>(*request);
  if (lifecycle_->phase() != Phase::running) {
    return c.refuse(lifecycle_->phase() == Phase::stopping ? "the container is stopping"
                                                           : "the container is not running yet; try again");
  }
  if (lifecycle_->paused()) return c.refuse("the VM is paused; resume it with 'fcvm unpause'");
  // Unset fields come from the container's main process.
  ImageConfig defaults;
  defaults.env = options_.main_process.env;
  defaults.working_dir = options_.main_process.cwd;
  defaults.user = std::to_string(options_.main_process.uid) + ":" +
                  std::to_string(options_.main_process.gid);
  ProcessOverrides overrides;
  overrides.args = exec.args;
  overrides.env = exec.env;
  overrides.workdir = exec.workdir;
  overrides.user = exec.user;
  auto process = resolve_process(defaults, overrides, options_.rootfs,
                                 [](const char*) -> const char* { return nullptr; });
  if (!process) return c.refuse(process.status().message());
  process->stdin = exec.stdin;
  process->output_window = kOutputWindow;
  if (exec.tty) process->tty = agent::WindowSize{exec.tty->rows, exec.tty->cols};
  if (Status st = agent_.send_exec(session, *process); !st.ok()) return c.refuse(st.message());
  c.exec_running = true;
}

void ContainerSupervisor::handle_vm_request(ControlClient& c, const control::Request& request) {
  if (lifecycle_->phase() != Phase::running) {
    return c.refuse(lifecycle_->phase() == Phase::stopping ? "the container is stopping"
                                                           : "the container is not running yet; try again");
  }
  if (!std::holds_alternative<control::SnapshotRequest>(request)) {
    const bool pause = std::holds_alternative<control::PauseRequest>(request);
    if (Status st = lifecycle_->set_paused(pause); !st.ok()) return c.refuse(st.message());
    c.reply({});
    c.finished = true;
    return;
  }
  if (!options_.take_snapshot) return c.refuse("this VM cannot be snapshotted");
  const int fd = c.fd.get();
  // A client that hung up (killed while waiting) no longer wants its snapshot.
  auto still_wanted = [fd] {
    pollfd p{fd, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 0;
  };
  auto taken = options_.take_snapshot(std::get<control::SnapshotRequest>(request), lifecycle_->paused(),
                                      still_wanted);
  if (!taken) return c.refuse(taken.status().message());
  control::Reply reply;
  reply.snapshot = *taken;
  c.reply(std::move(reply));
  c.finished = true;
}

void ContainerSupervisor::run_health_check(std::uint32_t session, ControlClient& c) {
  if (!options_.health) {
    return c.refuse("this VM has no health check; start it with --health-cmd or --health-url");
  }
  const bool started = options_.health->probe_now([this, session](const HealthState& state, const Status& outcome) {
    auto it = clients_.find(session);
    if (it == clients_.end()) return;
    it->second->reply(outcome.ok() ? control::Reply{} : control::Reply{state.last_output});
    it->second->finished = true;
    flush_client(session);
  });
  if (!started) c.refuse("the container is not running; its health cannot be checked");
}

void ContainerSupervisor::handle_client(std::uint32_t session, std::uint32_t events) {
  auto it = clients_.find(session);
  if (it == clients_.end()) return;
  ControlClient& c = *it->second;
  const bool reading = !c.finished && c.stdin_held.empty() && !c.stdin_eof_held;
  if (!reading && (events & (EPOLLHUP | EPOLLERR))) {
    // Gone while we were not reading it (it would be reported again and again).
    if (c.exec_running) (void)agent_.send_signal(session, SIGKILL);
    drop_client(session);
    return;
  }

  char buf[65536];
  // While STDIN waits for the agent's window, the client is not read: it waits in turn.
  while (!c.finished && c.stdin_held.empty() && !c.stdin_eof_held) {
    ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      // The client went away: its process must not linger in the guest.
      if (c.exec_running) (void)agent_.send_signal(session, SIGKILL);
      drop_client(session);
      return;
    }
    if (n < 0) break;
    std::vector<control::Message> messages;
    Status decoded = c.decoder.feed(std::string_view(buf, static_cast<size_t>(n)), messages);
    for (const auto& m : messages) {
      if (c.finished) break;
      if (!c.requested && m.type != control::MessageType::kRequest) {
        c.refuse("the first message on the control socket must be a request");
        break;
      }
      switch (m.type) {
        case control::MessageType::kRequest: handle_request(session, c, m.payload); break;
        case control::MessageType::kStdin:
          if (c.exec_running) c.stdin_held += m.payload;
          break;
        case control::MessageType::kStdinEof:
          if (c.exec_running) c.stdin_eof_held = true;
          break;
        case control::MessageType::kResize:
          // Only to a command that started (on its terminal): an agent that predates
          // terminals refused it, and must not see a frame type it does not know.
          if (auto size = control::parse_terminal_size(m.payload); size && c.exec_running && c.started) {
            (void)agent_.send(agent::FrameType::kResize, session,
                              agent::WindowSize{size->rows, size->cols}.to_payload());
          }
          break;
        default: break;
      }
    }
    if (!decoded.ok() && !c.finished) {
      if (c.exec_running) (void)agent_.send_signal(session, SIGKILL);
      c.exec_running = false;
      c.refuse("malformed control message: " + decoded.message());
    }
    forward_client_stdin(session, c);
  }
  flush_client(session);
}

void ContainerSupervisor::flush_client(std::uint32_t session) {
  auto it = clients_.find(session);
  if (it == clients_.end()) return;
  ControlClient& c = *it->second;
  // Write what we owe the client; a slow client only gets EPOLLOUT interest.
  while (c.owed() > 0) {
    const ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_offset, c.owed(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) break;  // full (EPOLLOUT brings us back) or gone (EPOLLIN/HUP does)
    c.out_offset += static_cast<std::size_t>(n);
    c.out_written += static_cast<std::uint64_t>(n);
  }
  if (c.owed() == 0) {
    c.out.clear();
    c.out_offset = 0;
  } else if (c.out_offset > c.out.size() / 2) {
    c.out.erase(0, c.out_offset);
    c.out_offset = 0;
  }
  std::uint64_t written = 0;
  while (!c.uncredited.empty() && c.uncredited.front().first <= c.out_written) {
    written += c.uncredited.front().second;
    c.uncredited.pop_front();
  }
  if (written > 0 && c.exec_running) credit(session, written);
  if (c.finished && c.owed() == 0) {
    drop_client(session);
    return;
  }
  // A finished client is only written to: reading it again would spin on unread input.
  // Nor is one read whose STDIN waits for the agent's window.
  const bool read = !c.finished && c.stdin_held.empty() && !c.stdin_eof_held;
  watch(c.fd.get(),
        (read ? static_cast<std::uint32_t>(EPOLLIN) : 0u) |
            (c.owed() == 0 ? 0u : static_cast<std::uint32_t>(EPOLLOUT)),
        kClientBase + session);
}

void ContainerSupervisor::drop_client(std::uint32_t session) {
  auto it = clients_.find(session);
  if (it == clients_.end()) return;
  unwatch(it->second->fd.get());
  clients_.erase(it);
}

}  // namespace fcvm
