// fcvm healthcheck run: runs a VM's health check now, as podman's does: prints "healthy"
// (exit 0) or "unhealthy" and why (exit 1). The VM's own process runs the check, so its
// recorded state moves as with a scheduled check.
#include <iostream>

#include "cli/commands.h"
#include "cli/vm_target.h"
#include "run/container_supervisor.h"

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
    const VmRecord record = find_vm(ctx, vm["name"].as<std::string>(), std::nullopt);
    if (!record.health) {
      throw CliError(record.name + " has no health check; give it one with podman run --health-cmd or --health-url",
                     kRunFailedExit);
    }
    if (!record.alive()) throw CliError(record.name + " is not running; start it again to check its health");
    auto client = check(connect_control(record));
    check(client.send_request(control::HealthcheckRequest{}));
    // The VM's process bounds the check by its --health-timeout; this only outlasts it.
    const auto reply = check(client.wait_reply(std::chrono::hours(1)));
    if (!reply.ok()) {
      std::cout << "unhealthy: " << *reply.error << "\n";
      return 1;
    }
    std::cout << "healthy\n";
    return 0;
  }};
}

}  // namespace fcvm::cli
