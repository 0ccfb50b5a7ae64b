// fcvm pause / fcvm unpause: stop and restart a running VM's vCPUs (podman's names).
#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

Command vm_state_command(const char* verb, const char* help, Result<std::string> (Engine::*change)(const VmRef&)) {
  return {{verb}, help, [verb, change](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc(std::string(verb) + " options");
    desc.add_options()("pid", po::value<int>(), "the VM's fcvm process id instead of its name");
    po::positional_options_description pos;
    pos.add("name", 1);
    po::options_description hidden;
    hidden.add_options()("name", po::value<std::string>());
    auto vm = parse_command_line(ctx, std::string(verb) + " NAME | --pid N", desc, pos, args, hidden);
    std::cout << check_engine((ctx.engine().*change)(vm_ref(vm))) << "\n";
    return 0;
  }};
}

}  // namespace

Command pause_command() {
  return vm_state_command("pause", "pause a running VM (its vCPUs stop; exec waits for unpause)",
                          &Engine::pause);
}
Command unpause_command() {
  return vm_state_command("unpause", "resume a paused VM", &Engine::unpause);
}

}  // namespace fcvm::cli
