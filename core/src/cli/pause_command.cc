// fcvm pause / fcvm unpause: stop and restart a running VM's vCPUs (podman's names).
#include <iostream>

#include "cli/commands.h"
#include "cli/vm_target.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

constexpr auto kReplyTimeout = std::chrono::seconds(30);

Command vm_state_command(const char* verb, const char* help, control::Request request) {
  return {{verb}, help, [verb, request](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc(std::string(verb) + " options");
    desc.add_options()("pid", po::value<int>(), "the VM's fcvm process id instead of its name");
    po::positional_options_description pos;
    pos.add("name", 1);
    po::options_description hidden;
    hidden.add_options()("name", po::value<std::string>());
    auto vm = parse_command_line(ctx, std::string(verb) + " NAME | --pid N", desc, pos, args, hidden);
    const VmRecord record = find_running_vm(ctx, vm);
    ask_vm(record, request, kReplyTimeout, std::string(verb) + " " + record.name);
    std::cout << record.name << "\n";
    return 0;
  }};
}

}  // namespace

Command pause_command() {
  return vm_state_command("pause", "pause a running VM (its vCPUs stop; exec waits for unpause)",
                          control::PauseRequest{});
}
Command unpause_command() {
  return vm_state_command("unpause", "resume a paused VM", control::ResumeRequest{});
}

}  // namespace fcvm::cli
