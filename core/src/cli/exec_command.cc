// fcvm exec: runs a command in a running container, through its VM's fcvm process and
// the guest agent; output and exit code come back as if it ran here.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>

#include "agent/agent_channel.h"
#include "cli/commands.h"
#include "cli/vm_target.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

void write_all(int fd, const std::string& bytes) {
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace

Command exec_command() {
  return {{"exec"}, "run a command in a running container",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("exec options");
    desc.add_options()
        ("interactive,i", "pass this process's stdin to the command")
        ("env,e", po::value<std::vector<std::string>>()->composing(), "set KEY=VALUE")
        ("workdir,w", po::value<std::string>(), "working directory")
        ("user,u", po::value<std::string>(), "UID[:GID] or NAME[:GROUP]");
    auto [vm, command] = parse_until_target(ctx, "exec [OPTIONS] NAME [--] COMMAND [ARG...]", desc, "name", args);
    if (!vm.count("name") || command.empty()) {
      throw CliError("exec needs a VM name and a command (see 'fcvm exec --help')", kUsageExit);
    }
    const VmRecord record = find_vm(ctx, vm["name"].as<std::string>(), std::nullopt);
    if (!record.alive()) throw CliError(record.name + " is not running");

    nlohmann::json request = {{"args", command}, {"stdin", vm.count("interactive") > 0}};
    if (vm.count("env")) request["env"] = vm["env"].as<std::vector<std::string>>();
    if (vm.count("workdir")) request["cwd"] = vm["workdir"].as<std::string>();
    if (vm.count("user")) request["user"] = vm["user"].as<std::string>();

    ::signal(SIGPIPE, SIG_IGN);
    auto channel = check(AgentChannel::adopt(check(connect_control(record))));
    check(channel.send(agent::FrameType::kExec, 0, request.dump()));
    bool stdin_open = vm.count("interactive") > 0;
    for (;;) {
      pollfd fds[2] = {{channel.fd(), static_cast<short>(channel.epoll_events()), 0},
                       {stdin_open ? STDIN_FILENO : -1, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 && errno != EINTR) throw CliError("poll: " + std::string(strerror(errno)));
      if (fds[0].revents & POLLOUT) check(channel.on_writable());
      if (fds[1].revents & (POLLIN | POLLHUP)) {
        char buf[65536];
        ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n > 0) {
          check(channel.send_stdin(0, std::string_view(buf, static_cast<size_t>(n))));
        } else {
          check(channel.send_stdin_eof(0));
          stdin_open = false;
        }
      }
      if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto frames = check(channel.on_readable());
      for (const auto& f : frames) {
        std::string err;
        if (f.type == agent::FrameType::kStdout) write_all(STDOUT_FILENO, f.payload);
        if (f.type == agent::FrameType::kStderr) write_all(STDERR_FILENO, f.payload);
        if (f.type == agent::FrameType::kError) {
          if (auto e = agent::parse_error_message(f.payload, &err)) std::cerr << "fcvm: exec: " << e->message << "\n";
        }
        if (f.type == agent::FrameType::kExit) {
          auto e = agent::parse_exit(f.payload, &err);
          return e ? e->code : 125;
        }
      }
      if (channel.closed()) throw CliError(record.name + " stopped before the command finished", 125);
    }
  }};
}

}  // namespace fcvm::cli
