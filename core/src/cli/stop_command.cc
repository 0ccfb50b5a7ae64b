// fcvm stop: asks a VM's fcvm process to stop its container gracefully, then insists.
#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {

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
    const auto outcome =
        check_engine(ctx.engine().stop(vm_ref(vm), std::chrono::seconds(vm["time"].as<std::int64_t>())));
    if (!outcome.refusal.empty()) std::cerr << "fcvm: stop: " << outcome.refusal << "\n";
    if (outcome.killed) {
      std::cerr << "fcvm: " << outcome.name << " did not stop in time and was killed; 'fcvm gc' removes what it left\n";
    }
    std::cout << outcome.name << "\n";
    return 0;
  }};
}

}  // namespace fcvm::cli
