// fcvm rm: removes exited VMs (their record, logs, disks and network), as `podman rm`
// removes exited containers. A running VM is refused unless --force, which kills it first.
#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {

Command rm_command() {
  return {{"rm"}, "remove exited VMs: their records, logs, disks and networks",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("rm options");
    desc.add_options()
        ("names", po::value<std::vector<std::string>>(), "VM names or ids")
        ("force,f", "kill a running VM first");
    po::positional_options_description pos;
    pos.add("names", -1);
    auto vm = parse_command_line(ctx, "rm [--force] NAME...", desc, pos, args);
    if (!vm.count("names")) throw CliError("rm needs a VM name (see 'fcvm ls -a')", kUsageExit);
    int failures = 0;
    for (const auto& name : vm["names"].as<std::vector<std::string>>()) {
      VmCleanup outcome = check_engine(ctx.engine().remove(VmRef::named(name), vm.count("force") > 0));
      if (!outcome.removed) {
        ctx.log()->warn("rm: keeping " + outcome.name + ": " + outcome.problem);
        ++failures;
        continue;
      }
      std::cout << outcome.name << "\n";
    }
    return failures == 0 ? 0 : 1;
  }};
}

}  // namespace fcvm::cli
