#include "agent.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/epoll.h>  // EPOLL* event bits
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "console_log.h"
#include "process_spawner.h"
#include "setup_error.h"

namespace fcvm::agent {
namespace {

// Output pipes stop being read while this much is queued for the port, and resume below
// the low mark, so a chatty process cannot make the agent buffer without bound.
constexpr std::size_t kQueueHighMark = 4u << 20;
constexpr std::size_t kQueueLowMark = 1u << 20;
constexpr std::size_t kReadChunk = 64u << 10;
// STDIN credit is returned in batches of at least this much (or when the buffer empties).
constexpr std::uint32_t kStdinCreditBatch = 16u << 10;

std::string kernel_release() {
  utsname u{};
  if (::uname(&u) != 0) return {};
  return u.release;
}

std::uint64_t uptime_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000000;
}

// 16 bytes from the kernel's RNG as hex. Drawn once per agent start and kept in guest memory,
// so a clone restored from a snapshot reports the snapshot's id and a fresh boot a new one.
std::string new_boot_id() {
  unsigned char bytes[16];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("getrandom for the boot id");
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGPWR}) sigaddset(&set, sig);
  return set;
}

}  // namespace

Agent::Agent(GuestSystem& system, HostLink link, AgentOptions options)
    : system_(system), options_(options), boot_id_(new_boot_id()),
      channel_(std::move(link), epoll_, *this, token(kPortToken, 0), token(kListenerToken, 0),
               options.port_retry_interval) {
  ::signal(SIGPIPE, SIG_IGN);
  const sigset_t set = handled_signals();
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) throw_errno("sigprocmask");
  signal_fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd_) throw_errno("signalfd");
  epoll_.add(signal_fd_.get(), EPOLLIN, token(kSignalToken, 0));
  channel_.start();
}

void Agent::run() {
  hello_at_ = Clock::now();
  for (;;) {
    try {
      loop_once();
    } catch (const std::exception& e) {
      // Nothing in the loop is expected to throw; if it does, stop cleanly rather than
      // spin on the same failure.
      log_line(std::string("internal error: ") + e.what());
      if (phase_ == Phase::kWaitingForPlan || phase_ == Phase::kHolding || phase_ == Phase::kRunning) {
        send_error(kMainSession, std::string("fc-agent internal error: ") + e.what());
        begin_shutdown(options_.default_grace, "internal error");
      } else {
        system_.power_off();
      }
    }
  }
}

void Agent::loop_once() {
  epoll_event events[32];
  const int n = epoll_.wait(events, 32, epoll_timeout_ms(Clock::now()));
  for (int i = 0; i < n; ++i) {
    const std::uint64_t tok = events[i].data.u64;
    const auto kind = static_cast<TokenKind>(tok & 0xff);
    const auto session = static_cast<std::uint32_t>(tok >> 8);
    switch (kind) {
      case kPortToken: channel_.on_port_event(events[i].events); break;
      case kSignalToken: on_signalfd(); break;
      case kListenerToken: channel_.on_listener(); break;
      case kStdoutToken: on_session_output(session, false); break;
      case kStderrToken: on_session_output(session, true); break;
      case kStdinToken:
        if (auto it = sessions_.find(session); it != sessions_.end()) write_stdin(it->second);
        break;
    }
  }
  const auto now = Clock::now();
  on_timers(now);
  advance_shutdown(now);
}

int Agent::epoll_timeout_ms(Clock::time_point now) const {
  std::optional<Clock::time_point> next;
  auto consider = [&](Clock::time_point t) { if (!next || t < *next) next = t; };
  if (phase_ == Phase::kWaitingForPlan) consider(hello_at_);
  if (auto retry = channel_.next_timer()) consider(*retry);
  if (phase_ == Phase::kTerminating || phase_ == Phase::kKilling) consider(deadline_);
  if (!next) return -1;
  if (*next <= now) return 0;
  // Round up so the loop does not wake just before the deadline and spin.
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - now).count();
  return static_cast<int>(std::min<std::int64_t>(ms, 60000));
}

void Agent::on_timers(Clock::time_point now) {
  channel_.on_timer(now);
  if (phase_ == Phase::kWaitingForPlan && now >= hello_at_) {
    // A HELLO still queued will be delivered when the host connects; do not pile up more.
    if (channel_.pending() == 0) send_hello();
    hello_at_ = now + options_.hello_interval;
  }
}

// ---------------------------------------------------------------------------------------
// Host channel

void Agent::on_connected() {
  if (phase_ == Phase::kWaitingForPlan) hello_at_ = Clock::now();
}

void Agent::on_lost(const std::string& reason, bool protocol_error) {
  if (!protocol_error) {
    begin_shutdown(std::chrono::milliseconds(0), reason);
    return;
  }
  log_line("protocol error from host: " + reason);
  send_error(kMainSession, "fc-agent: protocol error: " + reason);
  begin_shutdown(std::chrono::milliseconds(0), "protocol error");
}

void Agent::on_backlog(std::size_t pending) {
  if (!output_paused_ && pending > kQueueHighMark) set_output_paused(true);
  if (output_paused_ && pending < kQueueLowMark) set_output_paused(false);
}

void Agent::send_error(std::uint32_t session, const std::string& message) {
  log_line("session " + std::to_string(session) + ": " + message);
  channel_.send(FrameType::kError, session, ErrorMessage{message}.to_payload());
}

void Agent::send_hello() {
  Hello h;
  h.kernel = kernel_release();
  h.uptime_ms = uptime_ms();
  h.boot_id = boot_id_;
  channel_.send(FrameType::kHello, kMainSession, h.to_payload());
}

// ---------------------------------------------------------------------------------------
// Frames from the host

void Agent::on_frame(const Frame& frame) {
  switch (frame.type) {
    case FrameType::kPlan: on_plan(frame); break;
    case FrameType::kExec: on_exec(frame); break;
    case FrameType::kStdin: on_stdin(frame); break;
    case FrameType::kStdinEof: on_stdin_eof(frame); break;
    case FrameType::kSignal: on_signal(frame); break;
    case FrameType::kShutdown: on_shutdown(frame); break;
    case FrameType::kCredit: on_credit(frame); break;
    case FrameType::kAttach: on_attach(frame); break;
    case FrameType::kGo: on_go(frame); break;
    case FrameType::kResize: on_resize(frame); break;
    default: break;  // the decoder admits host->guest types only
  }
}

void Agent::on_plan(const Frame& frame) {
  if (phase_ != Phase::kWaitingForPlan || frame.session != kMainSession) {
    send_error(frame.session, "unexpected PLAN: a plan is accepted once, on session 0");
    return;
  }
  std::string error;
  auto plan = parse_plan(frame.payload, &error);
  if (!plan) {
    send_error(kMainSession, "invalid plan: " + error);
    begin_shutdown(std::chrono::milliseconds(0), "invalid plan");
    return;
  }
  plan_ = std::move(*plan);
  try {
    system_.apply_plan(plan_);
  } catch (const std::exception& e) {
    send_error(kMainSession, std::string("plan failed: ") + e.what());
    begin_shutdown(std::chrono::milliseconds(0), "plan failed");
    return;
  }
  if (plan_.hold) {
    phase_ = Phase::kHolding;
    channel_.send(FrameType::kReady, kMainSession, "{}");
    return;
  }
  phase_ = Phase::kRunning;
  start_session(kMainSession, main_process());
}

void Agent::on_go(const Frame& frame) {
  if (phase_ != Phase::kHolding || frame.session != kMainSession) {
    send_error(frame.session, "unexpected GO: only a held plan waits for it, on session 0");
    return;
  }
  std::string error;
  auto go = parse_go_request(frame.payload, &error);
  if (!go) {
    send_error(kMainSession, "invalid GO: " + error);
    begin_shutdown(std::chrono::milliseconds(0), "invalid GO");
    return;
  }
  if (go->hostname && *go->hostname != plan_.hostname) {
    plan_.hostname = *go->hostname;
    try {
      system_.set_hostname(plan_);
    } catch (const std::exception& e) {
      send_error(kMainSession, std::string("plan failed: ") + e.what());
      begin_shutdown(std::chrono::milliseconds(0), "plan failed");
      return;
    }
  }
  phase_ = Phase::kRunning;
  start_session(kMainSession, main_process());
}

void Agent::on_attach(const Frame& frame) {
  std::string error;
  auto request = parse_attach_request(frame.payload, &error);
  if (!request) {
    send_error(frame.session, "invalid ATTACH: " + error);
    return;
  }
  Attached reply;
  reply.generation = request->generation;
  reply.boot_id = boot_id_;
  reply.uptime_ms = uptime_ms();
  for (const auto& [id, session] : sessions_) reply.sessions.push_back(id);
  channel_.send(FrameType::kAttached, frame.session, reply.to_payload());
  system_.resync(*request);
}

void Agent::on_exec(const Frame& frame) {
  if (frame.session == kMainSession) {
    send_error(frame.session, "EXEC needs a session id greater than 0");
    return;
  }
  if (phase_ != Phase::kRunning) {
    send_error(frame.session, phase_ == Phase::kWaitingForPlan || phase_ == Phase::kHolding
                                  ? "EXEC before PLAN: the container is not running yet"
                                  : "EXEC refused: the VM is shutting down");
    channel_.send(FrameType::kExit, frame.session, Exit::exited(126).to_payload());
    return;
  }
  if (sessions_.count(frame.session)) {
    send_error(frame.session, "session " + std::to_string(frame.session) + " is already in use");
    return;
  }
  std::string error;
  auto process = parse_process(frame.payload, &error);
  if (!process) {
    send_error(frame.session, "invalid EXEC: " + error);
    channel_.send(FrameType::kExit, frame.session, Exit::exited(126).to_payload());
    return;
  }
  start_session(frame.session, *process);
}

void Agent::on_stdin(const Frame& frame) {
  auto it = sessions_.find(frame.session);
  if (it == sessions_.end()) return;  // gone
  Session& s = it->second;
  if (!s.in || s.in_eof) {  // no pipe (any more): the bytes are consumed by dropping them
    credit_stdin(s, frame.payload.size(), true);
    return;
  }
  std::string_view bytes = frame.payload;
  if (s.in_buffer.size() + bytes.size() > kStdinWindow) {
    const std::size_t room = kStdinWindow - std::min<std::size_t>(s.in_buffer.size(), kStdinWindow);
    send_error(s.id, "STDIN beyond the window of " + std::to_string(kStdinWindow) +
                         " bytes: dropped " + std::to_string(bytes.size() - room) + " bytes");
    bytes = bytes.substr(0, room);
  }
  s.in_buffer.append(bytes);
  write_stdin(s);
}

void Agent::credit_stdin(Session& s, std::size_t bytes, bool now) {
  s.in_consumed += static_cast<std::uint32_t>(bytes);
  if (s.in_consumed == 0 || (!now && s.in_consumed < kStdinCreditBatch)) return;
  channel_.send(FrameType::kStdinCredit, s.id, Credit{s.in_consumed}.to_payload());
  s.in_consumed = 0;
}

void Agent::on_credit(const Frame& frame) {
  std::string error;
  auto credit = parse_credit(frame.payload, &error);
  if (!credit) {
    send_error(frame.session, "invalid CREDIT: " + error);
    return;
  }
  auto it = sessions_.find(frame.session);
  if (it == sessions_.end() || it->second.window == 0) return;  // ended, or no window
  Session& s = it->second;
  s.out_credit = std::min<std::uint64_t>(s.out_credit + credit->bytes, kMaxCreditBytes);
  if (s.wait_status) {
    try_complete(s);
  } else {
    update_output_watches(s);
  }
}

void Agent::on_stdin_eof(const Frame& frame) {
  auto it = sessions_.find(frame.session);
  if (it == sessions_.end()) return;
  Session& s = it->second;
  if (s.terminal && s.in && !s.in_eof) {
    // A terminal has no end of input: type its end-of-file character, as a user would.
    termios t{};
    s.in_buffer.push_back(::tcgetattr(s.terminal.get(), &t) == 0 ? static_cast<char>(t.c_cc[VEOF]) : '\x04');
  }
  s.in_eof = true;
  write_stdin(s);
}

void Agent::on_resize(const Frame& frame) {
  std::string error;
  auto size = parse_window_size(frame.payload, &error);
  if (!size) {
    send_error(frame.session, "invalid RESIZE: " + error);
    return;
  }
  auto it = sessions_.find(frame.session);
  if (it == sessions_.end() || !it->second.terminal) return;  // ended, or no terminal
  winsize ws{};
  ws.ws_row = size->rows;
  ws.ws_col = size->cols;
  if (::ioctl(it->second.terminal.get(), TIOCSWINSZ, &ws) != 0) {
    log_line("resize session " + std::to_string(frame.session) + ": " + errno_text(errno));
  }
}

void Agent::on_signal(const Frame& frame) {
  std::string error;
  auto req = parse_signal_request(frame.payload, &error);
  if (!req) {
    send_error(frame.session, "invalid SIGNAL: " + error);
    return;
  }
  auto it = sessions_.find(frame.session);
  if (it == sessions_.end() || it->second.pid <= 0) return;  // already exited: a benign race
  if (::kill(it->second.pid, req->signal) != 0) {
    log_line("signal " + std::to_string(req->signal) + " to pid " +
             std::to_string(it->second.pid) + ": " + errno_text(errno));
  }
}

void Agent::on_shutdown(const Frame& frame) {
  std::string error;
  auto req = parse_shutdown_request(frame.payload, &error);
  if (!req) {
    send_error(frame.session, "invalid SHUTDOWN: " + error + "; using the default timeout");
    req = ShutdownRequest{};
  }
  begin_shutdown(std::chrono::milliseconds(req->timeout_ms), "shutdown requested by the host",
                 /*sessions_only=*/true, req->signal);
}

// ---------------------------------------------------------------------------------------
// Sessions

Process Agent::main_process() const {
  // As podman: the container sees its hostname in HOSTNAME unless its environment sets it.
  Process p = plan_.process;
  const bool set = std::any_of(p.env.begin(), p.env.end(), [](const std::string& e) { return e.rfind("HOSTNAME=", 0) == 0; });
  if (!set) p.env.push_back("HOSTNAME=" + plan_.hostname);
  return p;
}

void Agent::start_session(std::uint32_t id, const Process& process) {
  SpawnedProcess p;
  try {
    p = ProcessSpawner::spawn(process);
  } catch (const SetupError& e) {
    send_error(id, e.what());
    channel_.send(FrameType::kExit, id, Exit::exited(126).to_payload());
    if (id == kMainSession) begin_shutdown(std::chrono::milliseconds(0), "main process failed");
    return;
  }
  have_children_ = true;
  Session& s = sessions_[id];
  s.id = id;
  s.pid = p.pid;
  s.window = process.output_window;
  s.out_credit = process.output_window;
  s.out = std::move(p.stdout_pipe);
  s.err = std::move(p.stderr_pipe);
  s.terminal = std::move(p.terminal);
  if (p.start_error) {
    // The child has exited with 126/127; EXIT follows when it is reaped.
    send_error(id, *p.start_error);
  } else {
    s.started = true;
    s.in = std::move(p.stdin_pipe);
    channel_.send(FrameType::kStarted, id, Started{p.pid}.to_payload());
  }
  session_by_pid_[p.pid] = id;
  update_output_watches(s);
}

void Agent::on_session_output(std::uint32_t id, bool is_stderr) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  forward_output(it->second, is_stderr);
  if (auto again = sessions_.find(id); again != sessions_.end()) update_output_watches(again->second);
}

// Reads at most one chunk (and never more than the session's credit, nor *budget, which
// it decreases) from an output pipe into a frame.
Agent::Output Agent::forward_output(Session& s, bool is_stderr, std::size_t* budget) {
  OwnedFd& fd = s.output(is_stderr);
  if (!fd) return Output::kClosed;
  std::size_t limit = budget ? std::min(kReadChunk, *budget) : kReadChunk;
  if (s.window > 0) {
    if (s.out_credit == 0) return Output::kNoCredit;
    limit = static_cast<std::size_t>(std::min<std::uint64_t>(limit, s.out_credit));
  }
  char buf[kReadChunk];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, limit);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return Output::kEmpty;
    if (n <= 0) {
      close_output(s, is_stderr);
      return Output::kClosed;
    }
    if (s.window > 0) s.out_credit -= static_cast<std::uint64_t>(n);
    if (budget) *budget -= static_cast<std::size_t>(n);
    channel_.send(is_stderr ? FrameType::kStderr : FrameType::kStdout, s.id,
                std::string_view(buf, static_cast<size_t>(n)));
    return Output::kData;
  }
}

void Agent::update_output_watches(Session& s) {
  const bool readable = !output_paused_ && s.may_send_output();
  for (bool is_stderr : {false, true}) {
    OwnedFd& fd = s.output(is_stderr);
    bool& watched = s.output_watched(is_stderr);
    const bool want = fd && readable;
    if (want && !watched) epoll_.add(fd.get(), EPOLLIN, token(is_stderr ? kStderrToken : kStdoutToken, s.id));
    if (!want && watched) epoll_.remove(fd.get());
    watched = want;
  }
}

void Agent::close_output(Session& s, bool is_stderr) {
  OwnedFd& fd = s.output(is_stderr);
  bool& watched = s.output_watched(is_stderr);
  if (watched) epoll_.remove(fd.get());
  watched = false;
  fd.reset();
}

void Agent::write_stdin(Session& s) {
  while (s.in && !s.in_buffer.empty()) {
    const ssize_t n = ::write(s.in.get(), s.in_buffer.data(), s.in_buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (!s.in_watched) epoll_.add(s.in.get(), EPOLLOUT, token(kStdinToken, s.id));
      s.in_watched = true;
      return;
    }
    if (n < 0) {  // EPIPE: the process closed its stdin; later input has nowhere to go
      credit_stdin(s, s.in_buffer.size(), true);
      s.in_buffer.clear();
      s.in_eof = true;
      break;
    }
    s.in_buffer.erase(0, static_cast<size_t>(n));
    credit_stdin(s, static_cast<std::size_t>(n), s.in_buffer.empty());
  }
  if (s.in_watched) {
    epoll_.remove(s.in.get());
    s.in_watched = false;
  }
  if (s.in_eof) s.in.reset();
}

void Agent::set_output_paused(bool paused) {
  output_paused_ = paused;
  for (auto& [id, s] : sessions_) update_output_watches(s);
}

void Agent::finish_session(std::uint32_t id, int wait_status) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& s = it->second;
  session_by_pid_.erase(s.pid);
  s.pid = -1;
  s.wait_status = wait_status;
  update_output_watches(s);
  try_complete(s);
}

bool Agent::draining() const {
  return std::any_of(sessions_.begin(), sessions_.end(),
                     [](const auto& entry) { return entry.second.wait_status.has_value(); });
}

bool Agent::try_complete(Session& s) {
  // What the process wrote before it was reaped is in its pipes: forward that much (at
  // most a pipe's capacity, so a daemonised writer cannot keep this going), pausing
  // whenever the credit runs out.
  for (bool is_stderr : {false, true}) {
    OwnedFd& fd = s.output(is_stderr);
    if (!fd) continue;
    const int capacity = ::fcntl(fd.get(), F_GETPIPE_SZ);
    std::size_t budget = capacity > 0 ? static_cast<std::size_t>(capacity) : kReadChunk;
    Output got = Output::kEmpty;
    while (budget > 0 && (got = forward_output(s, is_stderr, &budget)) == Output::kData) {
    }
    if (budget > 0 && got == Output::kNoCredit) return false;
  }
  close_output(s, false);
  close_output(s, true);
  if (s.in_watched) epoll_.remove(s.in.get());
  const int wait_status = *s.wait_status;
  const std::uint32_t id = s.id;
  const Exit exit = WIFSIGNALED(wait_status) ? Exit::killed(WTERMSIG(wait_status))
                                             : Exit::exited(WEXITSTATUS(wait_status));
  channel_.send(FrameType::kExit, id, exit.to_payload());
  const bool started = s.started;
  sessions_.erase(id);
  if (id != kMainSession) return true;
  if (!started) {
    begin_shutdown(std::chrono::milliseconds(0), "main process could not be started");
  } else if (plan_.shutdown_on_exit) {
    begin_shutdown(options_.default_grace,
                   "main process exited with code " + std::to_string(exit.code));
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Processes and signals

void Agent::on_signalfd() {
  signalfd_siginfo info{};
  bool child = false;
  while (::read(signal_fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (static_cast<int>(info.ssi_signo) == SIGCHLD) {
      child = true;
    } else {
      begin_shutdown(options_.default_grace,
                     std::string("received ") + strsignal(static_cast<int>(info.ssi_signo)));
    }
  }
  if (child) reap_children();
}

void Agent::reap_children() {
  // As PID 1 every orphan becomes our child: reap them all, report only sessions.
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      if (auto it = session_by_pid_.find(pid); it != session_by_pid_.end()) {
        finish_session(it->second, status);
      }
      continue;
    }
    if (pid < 0 && errno == EINTR) continue;
    have_children_ = pid == 0;  // 0: children exist, none has exited; -1/ECHILD: none
    return;
  }
}

void Agent::signal_everyone(int sig) {
  system_.signal_all(sig);
  for (const auto& [id, s] : sessions_) {
    if (s.pid > 0) ::kill(s.pid, sig);
  }
}

void Agent::begin_shutdown(std::chrono::milliseconds grace, const std::string& reason,
                           bool sessions_only, int session_signal) {
  const auto deadline = Clock::now() + grace;
  if (phase_ == Phase::kTerminating) {
    deadline_ = std::min(deadline_, deadline);  // a later, shorter request wins
    if (!sessions_only && !everyone_terminated_) {
      everyone_terminated_ = true;
      system_.signal_all(SIGTERM);
    }
    return;
  }
  if (phase_ == Phase::kKilling || phase_ == Phase::kFlushing) return;
  log_line("shutting down: " + reason);
  phase_ = Phase::kTerminating;
  deadline_ = deadline;
  if (sessions_only) {
    for (const auto& [id, s] : sessions_) {
      if (s.pid > 0) ::kill(s.pid, session_signal);
    }
  } else {
    everyone_terminated_ = true;
    signal_everyone(SIGTERM);
  }
}

void Agent::advance_shutdown(Clock::time_point now) {
  if (phase_ == Phase::kTerminating || phase_ == Phase::kKilling) reap_children();
  if (phase_ == Phase::kTerminating && (!have_children_ || now >= deadline_)) {
    if (have_children_) {
      log_line("processes still running after SIGTERM: sending SIGKILL");
      signal_everyone(SIGKILL);
    }
    phase_ = Phase::kKilling;
    deadline_ = now + options_.reap_timeout;
    reap_children();
  }
  if (phase_ == Phase::kKilling && (!have_children_ || now >= deadline_)) {
    phase_ = Phase::kFlushing;
  }
  if (phase_ == Phase::kFlushing) {
    // Every reaped session's output and EXIT reach the host, however slowly it reads;
    // sessions whose process could not be reaped are abandoned.
    channel_.flush();
    if (channel_.dead() || (channel_.pending() == 0 && !draining())) system_.power_off();
  }
}

}  // namespace fcvm::agent
