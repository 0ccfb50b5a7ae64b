#include "supervise/container_supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "health/health_monitor.h"
#include "supervise/capped_log.h"
#include "supervise/container_lifecycle.h"
#include "supervise/control_server.h"
#include "supervise/epoll_set.h"
#include "supervise/main_input.h"
#include "supervise/output_relay.h"

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

// The health monitor's exec sessions: ids from the control clients' counter, so the two
// never collide; frames for them go to the monitor before any client sees them.
class ContainerSupervisor::HealthExec final : public GuestExec {
 public:
  explicit HealthExec(ContainerSupervisor& supervisor) : s_(supervisor) {}
  bool container_running() const override { return s_.lifecycle_->phase() == Phase::running; }
  bool paused() const override { return s_.lifecycle_->paused(); }
  Result<std::uint32_t> start_exec(const agent::Process& process) override {
    const std::uint32_t session = s_.control_->new_session();
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

ContainerSupervisor::~ContainerSupervisor() = default;

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

  ContainerLifecycle::Options stages;
  stages.boot_timeout = options_.boot_timeout;
  stages.stop_timeout = options_.stop_timeout;
  stages.stop_signal = options_.stop_signal;
  stages.console_log = options_.console_log;
  stages.on_paused = options_.on_paused;
  lifecycle_.emplace(options_.plan ? Phase::booting : options_.go ? Phase::starting : Phase::running, vm_,
                     agent_, std::move(stages), log_);
  ControlServer::Options control;
  control.socket = options_.control_socket;
  control.main_process = options_.main_process;
  control.rootfs = options_.rootfs;
  control.take_snapshot = options_.take_snapshot;
  control.health = options_.health;
  auto server = ControlServer::listen(std::move(control), agent_, *lifecycle_, *epoll_, {kListener, kClientBase}, log_);
  if (!server) return server.status();
  control_ = std::move(*server);

  watch(agent_.fd(), agent_.epoll_events(), kAgent);
  watch(vm_.exit_fd(), EPOLLIN, kVmExit);
  watch(signals_.get(), EPOLLIN, kSignals);
  for (size_t i = 0; i < options_.watched.size(); ++i) watch(options_.watched[i].fd, EPOLLIN, kWatchedBase + i);
  if (options_.health) watch(options_.health->fd(), EPOLLIN, kHealth);
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
      control_->reserve_up_to(stale);
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
        control_->on_listener();
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
        control_->on_client(static_cast<std::uint32_t>(tag - kClientBase), events[i].events);
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
  control_->drop_all();
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
  control_->on_stdin_credit(f.session, granted->bytes);
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
      control_->on_exec_frame(f);
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

}  // namespace fcvm
