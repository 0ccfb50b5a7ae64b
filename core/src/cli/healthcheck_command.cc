// fcvm healthcheck run: runs a VM's health check now, as podman's does: prints "healthy"
// (exit 0) or "unhealthy" and why (exit 1). The VM's own process runs the check, so its
// recorded state moves as with a scheduled check.
#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {

Command healthcheck_run_command() {
  return {{"healthcheck", "run"}, "run a VM's health check now (exit 0: healthy, 1: unhealthy)",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("healthcheck run options");
    desc.add_options()("name", po::value<std::string>(), "VM name or id");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse_command_line(ctx, "healthcheck run NAME", desc, pos, args);
    if (!vm.count("name")) throw CliError("healthcheck run needs a VM name (see 'fcvm ls')", kUsageExit);
    // podman healthcheck run: 0 healthy, 1 unhealthy, 125 for any error of its own.
    const auto unhealthy = check_engine(ctx.engine().health_check(vm_ref(vm)), kPodmanErrorExit);
    if (unhealthy) {
      std::cout << "unhealthy: " << *unhealthy << "\n";
      return 1;
    }
    std::cout << "healthy\n";
    return 0;
  }};
}

}  // namespace fcvm::cli
