// fcvm rm: removes exited VMs (their record, logs, disks and network), as `podman rm`
// removes exited containers. A running VM is refused unless --force, which kills it first.
#include <signal.h>

#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "cli/vm_cleanup.h"
#include "cli/vm_target.h"
#include "state/state_store.h"

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
    ctx.require_trusted_data_dir();
    FileLock collecting = check(ctx.state().lock_collection());
    int failures = 0;
    for (const auto& name : vm["names"].as<std::vector<std::string>>()) {
      const VmRecord record = find_vm(ctx, name, std::nullopt);
      if (record.alive()) {
        if (!vm.count("force")) {
          throw CliError(record.name + " is running; stop it first ('fcvm stop " + record.name +
                         "') or use 'fcvm rm --force'");
        }
        if (::kill(record.process.pid, SIGKILL) != 0 && errno == EPERM) {
          throw CliError("cannot kill " + record.name +
                         ": its process belongs to another user; run this as that user or root");
        }
        while (record.alive()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      VmCleanup outcome = clean_up_vm(ctx, record);
      if (!outcome.removed) {
        ctx.log()->warn("rm: keeping " + record.name + ": " + outcome.problem);
        ++failures;
        continue;
      }
      std::cout << record.name << "\n";
    }
    return failures == 0 ? 0 : 1;
  }};
}

}  // namespace fcvm::cli
