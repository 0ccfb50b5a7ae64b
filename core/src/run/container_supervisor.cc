#include "run/container_supervisor.h"

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
#include <fstream>
#include <utility>

#include "control/control_protocol.h"
#include "health/health_monitor.h"
#include "run/process_overrides.h"

namespace fcvm {
namespace {

using Clock = std::chrono::steady_clock;

enum Tag : std::uint64_t { kAgent = 1, kVmExit, kSignals, kListener, kHealth, kWatchedBase = 100, kClientBase = 1000 };

// Signals the supervisor turns into a graceful stop; blocked so only the signalfd sees them.
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

void write_all(int fd, const std::string& bytes) {
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a closed terminal or pipe must not stop the VM
    done += static_cast<size_t>(n);
  }
}

// The last `lines` lines of the guest's console, for boot failures.
std::string console_tail(const std::filesystem::path& console, size_t lines) {
  std::ifstream in(console);
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(line);
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  for (const auto& l : tail) out += "\n  | " + l;
  return out;
}

}  // namespace

// One connection on the control socket: a request, then, for exec, the command's I/O. Its
// exec session in the guest has the connection's id.
struct ContainerSupervisor::ControlClient {
  UniqueFd fd;
  control::MessageDecoder decoder{control::Sender::client};
  std::string out;
  bool requested = false;     // its REQUEST came
  bool exec_running = false;  // its command went to the agent and has not exited
  bool replied = false;       // its REPLY is queued
  bool finished = false;      // close once `out` is written

  void reply(control::Reply r) {
    if (replied) return;
    replied = true;
    (void)control::append_message(out, control::MessageType::kReply, control::to_payload(r));
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
  bool container_running() const override { return s_.phase_ == Phase::running; }
  bool paused() const override { return s_.paused_; }
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

void ContainerSupervisor::watch(int fd, std::uint32_t events, std::uint64_t tag) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
  }
}

Result<int> ContainerSupervisor::run() {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return errno_status("epoll_create1");
  const sigset_t set = stop_signals();
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  signals_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals_) return errno_status("signalfd");
  output_log_.reset(::open(options_.output_log.c_str(),
                           O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!output_log_) return errno_status("open " + options_.output_log.string());

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
  bool agent_open = true;
  if (options_.plan) {
    phase_ = Phase::booting;
    deadline_ = Clock::now() + options_.boot_timeout;
  } else if (options_.go) {
    // A restored guest holding at its startup barrier: the container starts now.
    if (Status st = agent_.send(agent::FrameType::kGo, agent::kMainSession, options_.go->to_payload()); !st.ok()) {
      return st;
    }
    phase_ = Phase::starting;
  } else {
    phase_ = Phase::running;
    // A restored guest already runs its container; exec is served from here on.
    if (options_.on_started) options_.on_started();
    start_health();
  }

  while (!vm_.exited() && !failure_) {
    int timeout_ms = -1;
    if (deadline_) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - Clock::now());
      timeout_ms = static_cast<int>(std::clamp<long>(left.count(), 0, 60000));
    }
    epoll_event events[16];
    int n = ::epoll_wait(epoll_.get(), events, 16, timeout_ms);
    if (n < 0 && errno != EINTR) return errno_status("epoll_wait");
    if (deadline_ && Clock::now() >= *deadline_) {
      if (phase_ == Phase::booting) {
        fail(boot_failure(Errc::timeout, "the guest agent did not answer within " +
                                             std::to_string(options_.boot_timeout.count() / 1000) + " s"));
        break;
      }
      log_->warn("the guest did not power off in time; stopping the VM");
      (void)vm_.shutdown(std::chrono::milliseconds(3000));
      break;
    }
    for (int i = 0; i < n && !failure_; ++i) {
      const auto tag = events[i].data.u64;
      if (tag == kAgent && agent_open) {
        if (events[i].events & EPOLLOUT) (void)agent_.on_writable();
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
          if (Status st = handle_agent(); !st.ok()) {
            log_->warn("agent channel: " + st.message());
            agent_open = false;
          } else if (agent_.closed()) {
            agent_open = false;
          }
        }
        if (!agent_open) {
          ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, agent_.fd(), nullptr);
          if (phase_ == Phase::booting) {
            fail(boot_failure(Errc::io, "fc-agent channel closed before HELLO: the guest did "
                                        "not boot or lacks fc-agent"));
          }
        }
      } else if (tag == kSignals) {
        (void)handle_signal();
      } else if (tag == kListener) {
        accept_client();
      } else if (tag == kHealth) {
        options_.health->on_ready();
      } else if (tag >= kWatchedBase && tag < kWatchedBase + options_.watched.size()) {
        auto& watched = options_.watched[tag - kWatchedBase];
        if (watched.on_ready()) {
          ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, watched.fd, nullptr);
          begin_stop(options_.stop_timeout);
        }
      } else if (tag >= kClientBase) {
        handle_client(static_cast<std::uint32_t>(tag - kClientBase));
      }
    }
    if (agent_open) watch(agent_.fd(), agent_.epoll_events(), kAgent);
  }
  // The VM is gone: whatever the agent wrote before powering off is still in the socket
  // (on_readable takes at most 256 KiB a call, so read until nothing is left).
  for (pollfd p{agent_.fd(), POLLIN, 0}; agent_open && !failure_ && !agent_.closed() &&
                                         ::poll(&p, 1, 0) > 0 && handle_agent().ok();) {
  }
  while (!clients_.empty()) drop_client(clients_.begin()->first);

  if (failure_) return *failure_;
  if (phase_ == Phase::booting) {
    auto st = vm_.exited();
    return boot_failure(Errc::io, "the VM exited while booting (" + (st ? st->describe() : "killed") + ")");
  }
  if (exit_code_) return *exit_code_;
  if (start_error_) return error(Errc::invalid_argument, *start_error_);
  auto vmm_exit = vm_.exited();
  return error(Errc::io, std::string("the VM stopped before the container exited (VMM ") +
                             (vmm_exit ? vmm_exit->describe() : "killed") + ")");
}

void ContainerSupervisor::start_health() {
  if (!options_.health || health_exec_) return;
  health_exec_ = std::make_unique<HealthExec>(*this);
  options_.health->start(*health_exec_);
}

Status ContainerSupervisor::boot_failure(Errc code, const std::string& what) const {
  return error(code, what + "; console " + options_.console_log.string() + ":" +
                         console_tail(options_.console_log, 8));
}

void ContainerSupervisor::fail(Status failure) {
  if (!failure_) failure_ = std::move(failure);
}

void ContainerSupervisor::write_output(int fd, const std::string& bytes) {
  write_all(output_log_.get(), bytes);
  if (options_.forward_output) write_all(fd, bytes);
}

Status ContainerSupervisor::handle_agent() {
  auto frames = agent_.on_readable();
  if (!frames) return frames.status();
  for (auto& f : *frames) {
    if (f.type == agent::FrameType::kHello) {
      handle_hello(f);
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
        if (phase_ == Phase::starting) phase_ = Phase::running;
        if (options_.on_started) options_.on_started();
        if (pending_stop_ && phase_ == Phase::running) send_stop(*std::exchange(pending_stop_, std::nullopt));
        start_health();
        break;
      case agent::FrameType::kStdout: write_output(STDOUT_FILENO, f.payload); break;
      case agent::FrameType::kStderr: write_output(STDERR_FILENO, f.payload); break;
      case agent::FrameType::kExit:
        if (auto e = agent::parse_exit(f.payload, &err)) {
          exit_code_ = e->code;
          log_->debug("container exited with " + std::to_string(e->code));
        } else {
          log_->warn("agent sent a bad EXIT: " + err);
          exit_code_ = kRunFailedExit;
        }
        // The agent powers the guest off next; do not wait on it forever.
        if (phase_ != Phase::stopping) {
          phase_ = Phase::stopping;
          deadline_ = Clock::now() + options_.stop_timeout;
        }
        break;
      case agent::FrameType::kError:
        if (auto e = agent::parse_error_message(f.payload, &err)) {
          if (phase_ == Phase::starting) start_error_ = e->message;
          log_->warn("agent: " + e->message);
        }
        break;
      default: break;
    }
  }
  return ok_status();
}

void ContainerSupervisor::handle_hello(const agent::Frame& frame) {
  if (phase_ != Phase::booting) return;  // the agent repeats HELLO until the plan arrives
  std::string why;
  auto hello = agent::parse_hello(frame.payload, &why);
  if (!hello) return fail(error(Errc::protocol, "fc-agent sent a malformed HELLO: " + why));
  if (hello->protocol != agent::kProtocolVersion) {
    return fail(error(Errc::protocol,
                      "the guest agent speaks protocol " + std::to_string(hello->protocol) +
                          " but fcvm speaks " + std::to_string(agent::kProtocolVersion) +
                          "; rebuild the initramfs with 'fcvm setup initramfs'"));
  }
  options_.guest_boot_id = hello->boot_id;
  log_->debug("agent up: kernel " + hello->kernel + ", " + std::to_string(hello->uptime_ms) + " ms");
  if (Status st = agent_.send_plan(*options_.plan); !st.ok()) return fail(st);
  phase_ = Phase::starting;
  deadline_.reset();
}

void ContainerSupervisor::handle_ready() {
  if (phase_ != Phase::starting || !options_.plan || !options_.plan->hold) {
    log_->warn("fc-agent sent READY for a plan that does not hold; ignored");
    return;
  }
  if (options_.at_barrier) options_.at_barrier(options_.guest_boot_id);
  if (Status st = agent_.send(agent::FrameType::kGo, agent::kMainSession, agent::GoRequest{}.to_payload()); !st.ok()) {
    fail(st);
  }
}

Status ContainerSupervisor::handle_signal() {
  signalfd_siginfo info{};
  while (::read(signals_.get(), &info, sizeof info) == sizeof info) {
    log_->info(std::string("received ") + strsignal(static_cast<int>(info.ssi_signo)) +
               "; stopping the container");
    begin_stop(options_.stop_timeout);
  }
  return ok_status();
}

void ContainerSupervisor::begin_stop(std::chrono::milliseconds grace) {
  // A paused guest cannot stop its container.
  if (paused_ && vm_.resume().ok()) paused_ = false;
  if (++stop_requests_ > 1) {
    // A second request: no more grace.
    vm_.kill();
    return;
  }
  if (phase_ == Phase::booting || phase_ == Phase::starting) {
    // The agent stops a container it has started: ask once it has (the boot deadline
    // still applies, and a second request kills the VM at once).
    pending_stop_ = grace;
    return;
  }
  send_stop(grace);
}

void ContainerSupervisor::send_stop(std::chrono::milliseconds grace) {
  (void)agent_.send_shutdown(grace);
  // The agent SIGKILLs after `grace`; give it a little more to power off.
  phase_ = Phase::stopping;
  deadline_ = Clock::now() + grace + std::chrono::seconds(5);
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
    case agent::FrameType::kStarted: c.reply({}); break;
    case agent::FrameType::kStdout:
      (void)control::append_message(c.out, control::MessageType::kStdout, f.payload);
      break;
    case agent::FrameType::kStderr:
      (void)control::append_message(c.out, control::MessageType::kStderr, f.payload);
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
    begin_stop(std::chrono::milliseconds(stop->timeout_ms));
    return;
  }
  const auto& exec = std::get<control::ExecRequest>(*request);
  if (phase_ != Phase::running) {
    return c.refuse(phase_ == Phase::stopping ? "the container is stopping"
                                              : "the container is not running yet; try again");
  }
  if (paused_) return c.refuse("the VM is paused; resume it with 'fcvm unpause'");
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
  if (Status st = agent_.send_exec(session, *process); !st.ok()) return c.refuse(st.message());
  c.exec_running = true;
}

void ContainerSupervisor::handle_vm_request(ControlClient& c, const control::Request& request) {
  if (phase_ != Phase::running) {
    return c.refuse(phase_ == Phase::stopping ? "the container is stopping"
                                              : "the container is not running yet; try again");
  }
  if (!std::holds_alternative<control::SnapshotRequest>(request)) {
    const bool pause = std::holds_alternative<control::PauseRequest>(request);
    if (paused_ != pause) {
      if (Status st = pause ? vm_.pause() : vm_.resume(); !st.ok()) return c.refuse(st.message());
      paused_ = pause;
      log_->info(pause ? "paused on the control socket" : "resumed on the control socket");
    }
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
  auto taken = options_.take_snapshot(std::get<control::SnapshotRequest>(request), paused_, still_wanted);
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

void ContainerSupervisor::handle_client(std::uint32_t session) {
  auto it = clients_.find(session);
  if (it == clients_.end()) return;
  ControlClient& c = *it->second;

  char buf[65536];
  while (!c.finished) {
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
          if (c.exec_running) (void)agent_.send_stdin(session, m.payload);
          break;
        case control::MessageType::kStdinEof:
          if (c.exec_running) (void)agent_.send_stdin_eof(session);
          break;
        default: break;
      }
    }
    if (!decoded.ok() && !c.finished) {
      if (c.exec_running) (void)agent_.send_signal(session, SIGKILL);
      c.exec_running = false;
      c.refuse("malformed control message: " + decoded.message());
    }
  }
  flush_client(session);
}

void ContainerSupervisor::flush_client(std::uint32_t session) {
  auto it = clients_.find(session);
  if (it == clients_.end()) return;
  ControlClient& c = *it->second;
  // Write what we owe the client; a slow client only gets EPOLLOUT interest.
  while (!c.out.empty()) {
    ssize_t n = ::write(c.fd.get(), c.out.data(), c.out.size());
    if (n <= 0) break;
    c.out.erase(0, static_cast<size_t>(n));
  }
  if (c.finished && c.out.empty()) {
    drop_client(session);
    return;
  }
  // A finished client is only written to: reading it again would spin on unread input.
  watch(c.fd.get(),
        (c.finished ? 0u : static_cast<std::uint32_t>(EPOLLIN)) |
            (c.out.empty() ? 0u : static_cast<std::uint32_t>(EPOLLOUT)),
        kClientBase + session);
}

void ContainerSupervisor::drop_client(std::uint32_t session) {
  auto it = clients_.find(session);
  if (it == clients_.end()) return;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second->fd.get(), nullptr);
  clients_.erase(it);
}

}  // namespace fcvm
