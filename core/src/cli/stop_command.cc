// fcvm stop: asks a VM's fcvm process to stop its container gracefully, then insists.
#include <signal.h>

#include <cerrno>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "cli/vm_target.h"
#include "fcvm/agent_protocol.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

bool wait_dead(const ProcessIdentity& p, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (p.alive()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

}  // namespace

Command stop_command() {
  return {{"stop"}, "stop a running VM (SIGTERM to its process, SIGKILL after --time)",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("stop options");
    desc.add_options()
        ("name", po::value<std::string>(), "VM name or id")
        ("pid", po::value<int>(), "the VM's fcvm process id instead of its name")
        ("time,t", po::value<std::int64_t>()->default_value(10),
         "seconds to wait before SIGKILL (0-600)");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse_command_line(ctx, "stop [OPTIONS] NAME | --pid N", desc, pos, args);
    std::optional<std::string> name;
    std::optional<int> pid;
    if (vm.count("name")) name = vm["name"].as<std::string>();
    if (vm.count("pid")) pid = vm["pid"].as<int>();
    const std::int64_t seconds = vm["time"].as<std::int64_t>();
    if (seconds < 0 || seconds * 1000 > agent::kMaxShutdownTimeoutMs) {
      throw CliError("--time " + std::to_string(seconds) + ": must be between 0 and " +
                         std::to_string(agent::kMaxShutdownTimeoutMs / 1000) + " seconds",
                     kUsageExit);
    }
    const VmRecord record = find_vm(ctx, name, pid);
    if (record.alive()) {
      // Signalling proves we may stop it at all; the control socket alone does not tell.
      if (::kill(record.process.pid, 0) != 0 && errno == EPERM) {
        throw CliError("cannot stop " + record.name + ": its process " +
                       std::to_string(record.process.pid) +
                       " belongs to another user; run 'fcvm stop' as that user or as root");
      }
      const auto time = std::chrono::seconds(seconds);
      // Ask on the control socket, which carries --time to the guest; a process that does
      // not answer there (still booting) gets SIGTERM and its default grace.
      bool asked = false;
      if (auto client = connect_control(record)) {
        const auto ms = static_cast<std::uint32_t>(std::chrono::milliseconds(time).count());
        if (Status st = client->send_request(control::StopRequest{ms}); st.ok()) {
          auto reply = client->wait_reply(std::chrono::seconds(5));
          asked = reply.ok() && reply->ok();
          if (reply.ok() && !reply->ok()) std::cerr << "fcvm: stop: " << *reply->error << "\n";
        }
      }
      if (!asked) ::kill(record.process.pid, SIGTERM);
      // The guest gets `time` (after a bare SIGTERM: the process's default of 10 s), then a
      // few seconds to power off.
      const auto grace = (asked ? time : std::chrono::seconds(10)) + std::chrono::seconds(5);
      if (!wait_dead(record.process, grace)) {
        ::kill(record.process.pid, SIGKILL);  // its VMM dies with it (parent-death signal)
        if (!wait_dead(record.process, std::chrono::seconds(5))) {
          throw CliError("could not stop " + record.name + ": its process " +
                         std::to_string(record.process.pid) + " survived SIGKILL");
        }
        std::cerr << "fcvm: " << record.name
                  << " did not stop in time and was killed; 'fcvm gc' removes what it left\n";
      }
    }
    std::cout << record.name << "\n";
    return 0;
  }};
}

}  // namespace fcvm::cli
