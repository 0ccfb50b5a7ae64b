// fcvm exec: runs a command in a running container, through its VM's fcvm process and
// the guest agent; output and exit code come back as if it ran here.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"
#include "fcvm/unique_fd.h"
#include "log/logging.h"
#include "supervise/terminal.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

// Writes all of `bytes`, waiting while `fd` is full. False when the reader is gone (EPIPE)
// or the write fails otherwise.
bool write_all(int fd, const std::string& bytes) {
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, -1);
      continue;
    }
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Exit status of a process killed by SIGPIPE, as a shell reports it.
constexpr int kBrokenPipeExit = 128 + SIGPIPE;

// podman exec's code when the exec itself failed.
constexpr int kExecFailedExit = 125;

// Stdin is read only while less than this waits for the control socket: the VM's fcvm
// process takes it at the pace the command consumes it, and meanwhile we keep reading
// the command's output (blocking on the send could deadlock with a command whose output
// we do not read).
constexpr std::size_t kStdinQueueLimit = 64u << 10;

}  // namespace

Command exec_command() {
  return {{"exec"}, "run a command in a running container",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("exec options");
    desc.add_options()
        ("interactive,i", "pass this process's stdin to the command")
        ("tty,t", "run the command on a pseudo-terminal in the guest (stdout and stderr merged)")
        ("env,e", po::value<std::vector<std::string>>()->composing(), "set KEY=VALUE")
        ("workdir,w", po::value<std::string>(), "working directory")
        ("user,u", po::value<std::string>(), "UID[:GID] or NAME[:GROUP]");
    auto [vm, command] = parse_until_target(ctx, "exec [OPTIONS] NAME [--] COMMAND [ARG...]", desc, "name", args);
    if (!vm.count("name") || command.empty()) {
      throw CliError("exec needs a VM name and a command (see 'fcvm exec --help')", kUsageExit);
    }
    control::ExecRequest request;
    request.args = command;
    request.stdin = vm.count("interactive") > 0;
    if (vm.count("env")) request.env = vm["env"].as<std::vector<std::string>>();
    if (vm.count("workdir")) request.workdir = vm["workdir"].as<std::string>();
    if (vm.count("user")) request.user = vm["user"].as<std::string>();

    // -t: our terminal's size now and, through SIGWINCH, later.
    UniqueFd resizes;
    if (vm.count("tty")) {
      const auto size = initial_terminal_size();
      request.tty = control::TerminalSize{size.rows, size.cols};
      if (::isatty(STDIN_FILENO)) {
        sigset_t winch;
        sigemptyset(&winch);
        sigaddset(&winch, SIGWINCH);
        ::sigprocmask(SIG_BLOCK, &winch, nullptr);
        resizes.reset(::signalfd(-1, &winch, SFD_CLOEXEC | SFD_NONBLOCK));
      }
    }

    ::signal(SIGPIPE, SIG_IGN);
    auto client = check_engine(ctx.engine().exec(vm_ref(vm), request), kExecFailedExit);
    // -it on a terminal: keys reach the guest's terminal as typed; restored on every return.
    const std::optional<RawTerminal> raw =
        request.tty && request.stdin ? RawTerminal::enter(STDIN_FILENO) : std::nullopt;
    bool stdin_open = request.stdin;
    bool refused = false;
    for (;;) {
      const bool read_stdin = stdin_open && client.queued() < kStdinQueueLimit;
      const short socket_events = static_cast<short>(POLLIN | (client.queued() > 0 ? POLLOUT : 0));
      pollfd fds[3] = {{client.fd(), socket_events, 0},
                       {read_stdin ? STDIN_FILENO : -1, POLLIN, 0},
                       {resizes.get(), POLLIN, 0}};
      if (::poll(fds, 3, -1) < 0 && errno != EINTR) throw CliError("poll: " + std::string(strerror(errno)));
      // The server stops reading once the command exited (`yes | fcvm exec -i vm head -1`):
      // input that cannot be delivered is dropped, and the EXIT already sent is still read.
      auto deliver = [&](const Status& sent) {
        if (!sent.ok()) stdin_open = false;
      };
      if (fds[0].revents & POLLOUT) deliver(client.write_queued());
      if (fds[2].revents & POLLIN) {
        signalfd_siginfo info{};
        while (::read(resizes.get(), &info, sizeof info) == sizeof info) {
        }
        if (auto size = terminal_size(STDIN_FILENO)) {
          deliver(client.resize(size->rows, size->cols));
        }
      }
      if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        char buf[65536];
        ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n > 0) {
          deliver(client.send_stdin(std::string_view(buf, static_cast<size_t>(n))));
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          deliver(client.close_stdin());
          stdin_open = false;
        }
      }
      if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      for (const auto& e : check(client.receive(), kExecFailedExit)) {
        switch (e.kind) {
          // A closed stdout ends us as SIGPIPE would end the command run here (`| head`);
          // our going away makes the VM's fcvm process kill the command in the guest.
          case ExecSession::Event::Kind::stdout_data:
            if (!write_all(STDOUT_FILENO, e.data)) return kBrokenPipeExit;
            break;
          case ExecSession::Event::Kind::stderr_data:
            if (!write_all(STDERR_FILENO, e.data)) return kBrokenPipeExit;
            break;
          case ExecSession::Event::Kind::refused:
            std::cerr << "fcvm: exec: " << escape_control_chars(e.data) << "\n";
            refused = true;
            break;
          case ExecSession::Event::Kind::exited: return e.exit_code;
        }
      }
      if (client.closed()) {
        if (refused) return kExecFailedExit;
        throw CliError(client.vm_name() + " stopped before the command finished", kExecFailedExit);
      }
    }
  }};
}

}  // namespace fcvm::cli
