#include "supervise/control_server.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <string_view>
#include <utility>
#include <vector>

#include "health/health_monitor.h"
#include "image/process_overrides.h"
#include "supervise/output_relay.h"

namespace fcvm {

// One connection on the control socket: a request, then, for exec, the command's I/O.
struct ControlServer::Client {
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
  // Read while nothing is held back for the agent's window and more may come.
  bool reading() const { return !finished && stdin_held.empty() && !stdin_eof_held; }
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

Result<std::unique_ptr<ControlServer>> ControlServer::listen(Options options, AgentChannel& agent,
                                                             ContainerLifecycle& lifecycle, EpollSet& epoll,
                                                             Tags tags, LoggerPtr log) {
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const auto path = options.socket.string();
  if (path.size() >= sizeof addr.sun_path) {
    return error(Errc::invalid_argument, "control socket path too long: " + path);
  }
  std::copy(path.begin(), path.end(), addr.sun_path);
  ::unlink(path.c_str());
  if (!listener || ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener.get(), 16) != 0) {
    return errno_status("listen on " + path);
  }
  ::chmod(path.c_str(), 0600);
  std::unique_ptr<ControlServer> server(
      new ControlServer(std::move(options), agent, lifecycle, epoll, tags, std::move(listener), std::move(log)));
  if (Status st = epoll.watch(server->listener_.get(), EPOLLIN, tags.listener); !st.ok()) return st;
  return server;
}

ControlServer::ControlServer(Options options, AgentChannel& agent, ContainerLifecycle& lifecycle,
                             EpollSet& epoll, Tags tags, UniqueFd listener, LoggerPtr log)
    : options_(std::move(options)),
      agent_(agent),
      lifecycle_(lifecycle),
      epoll_(epoll),
      tags_(tags),
      listener_(std::move(listener)),
      log_(std::move(log)) {}

ControlServer::~ControlServer() {
  drop_all();
  epoll_.unwatch(listener_.get());
  ::unlink(options_.socket.c_str());
}

void ControlServer::drop_all() {
  while (!clients_.empty()) drop(clients_.begin()->first);
}

void ControlServer::on_listener() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    const std::uint32_t session = new_session();
    auto client = std::make_unique<Client>();
    client->fd = std::move(fd);
    (void)epoll_.watch(client->fd.get(), EPOLLIN, tags_.client_base + session);
    clients_.emplace(session, std::move(client));
  }
}

// Output and status of an exec'd command, from the guest (hostile: its JSON is re-parsed
// and re-encoded, never passed through).
void ControlServer::on_exec_frame(const agent::Frame& f) {
  auto it = clients_.find(f.session);
  if (it == clients_.end()) return;
  Client& c = *it->second;
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
        drop(f.session);
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
  flush(f.session);
}

void ControlServer::handle_request(std::uint32_t session, Client& c, const std::string& payload) {
  if (c.requested) return c.refuse("one request per connection");
  c.requested = true;
  auto request = control::parse_request(payload);
  if (!request) {
    log_->info("refused a control request: " + request.status().message());
    return c.refuse(request.status().message());
  }
  if (std::holds_alternative<control::HealthcheckRequest>(*request)) return run_health_check(session, c);
  if (const auto* stop = std::get_if<control::StopRequest>(&*request)) {
    log_->info("stop requested on the control socket");
    c.reply({});
    c.finished = true;
    lifecycle_.stop(std::chrono::milliseconds(stop->timeout_ms));
    return;
  }
  if (const auto* exec = std::get_if<control::ExecRequest>(&*request)) return handle_exec(session, c, *exec);
  handle_vm_request(c, *request);
}

void ControlServer::handle_exec(std::uint32_t session, Client& c, const control::ExecRequest& exec) {
  using Phase = ContainerLifecycle::Phase;
  if (lifecycle_.phase() != Phase::running) {
    return c.refuse(lifecycle_.phase() == Phase::stopping ? "the container is stopping"
                                                          : "the container is not running yet; try again");
  }
  if (lifecycle_.paused()) return c.refuse("the VM is paused; resume it with 'fcvm unpause'");
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

void ControlServer::handle_vm_request(Client& c, const control::Request& request) {
  using Phase = ContainerLifecycle::Phase;
  if (lifecycle_.phase() != Phase::running) {
    return c.refuse(lifecycle_.phase() == Phase::stopping ? "the container is stopping"
                                                          : "the container is not running yet; try again");
  }
  if (!std::holds_alternative<control::SnapshotRequest>(request)) {
    const bool pause = std::holds_alternative<control::PauseRequest>(request);
    if (Status st = lifecycle_.set_paused(pause); !st.ok()) return c.refuse(st.message());
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
  auto taken = options_.take_snapshot(std::get<control::SnapshotRequest>(request), lifecycle_.paused(),
                                      still_wanted);
  if (!taken) return c.refuse(taken.status().message());
  control::Reply reply;
  reply.snapshot = *taken;
  c.reply(std::move(reply));
  c.finished = true;
}

void ControlServer::run_health_check(std::uint32_t session, Client& c) {
  if (!options_.health) {
    return c.refuse("this VM has no health check; start it with --health-cmd or --health-url");
  }
  const bool started = options_.health->probe_now([this, session](const HealthState& state, const Status& outcome) {
    auto it = clients_.find(session);
    if (it == clients_.end()) return;
    it->second->reply(outcome.ok() ? control::Reply{} : control::Reply{state.last_output});
    it->second->finished = true;
    flush(session);
  });
  if (!started) c.refuse("the container is not running; its health cannot be checked");
}

void ControlServer::on_client(std::uint32_t session, std::uint32_t events) {
  auto it = clients_.find(session);
  if (it == clients_.end()) return;
  Client& c = *it->second;
  if (!c.reading() && (events & (EPOLLHUP | EPOLLERR))) {
    // Gone while we were not reading it (it would be reported again and again).
    if (c.exec_running) (void)agent_.send_signal(session, SIGKILL);
    drop(session);
    return;
  }

  char buf[65536];
  // While STDIN waits for the agent's window, the client is not read: it waits in turn.
  while (c.reading()) {
    ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      // The client went away: its process must not linger in the guest.
      if (c.exec_running) (void)agent_.send_signal(session, SIGKILL);
      drop(session);
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
    forward_stdin(session, c);
  }
  flush(session);
}

void ControlServer::on_stdin_credit(std::uint32_t session, std::uint64_t bytes) {
  auto it = clients_.find(session);
  if (it == clients_.end()) return;
  Client& c = *it->second;
  c.stdin_in_flight -= std::min(c.stdin_in_flight, bytes);
  forward_stdin(session, c);
  // Reading the client resumes once nothing is held back.
  if (c.stdin_held.empty() && !c.stdin_eof_held) on_client(session, EPOLLIN);
}

void ControlServer::forward_stdin(std::uint32_t session, Client& c) {
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

void ControlServer::flush(std::uint32_t session) {
  auto it = clients_.find(session);
  if (it == clients_.end()) return;
  Client& c = *it->second;
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
  if (written > 0 && c.exec_running) send_output_credit(agent_, session, written);
  if (c.finished && c.owed() == 0) {
    drop(session);
    return;
  }
  // A finished client is only written to: reading it again would spin on unread input.
  // Nor is one read whose STDIN waits for the agent's window.
  (void)epoll_.watch(c.fd.get(),
                     (c.reading() ? static_cast<std::uint32_t>(EPOLLIN) : 0u) |
                         (c.owed() == 0 ? 0u : static_cast<std::uint32_t>(EPOLLOUT)),
                     tags_.client_base + session);
}

void ControlServer::drop(std::uint32_t session) {
  auto it = clients_.find(session);
  if (it == clients_.end()) return;
  epoll_.unwatch(it->second->fd.get());
  clients_.erase(it);
}

}  // namespace fcvm
