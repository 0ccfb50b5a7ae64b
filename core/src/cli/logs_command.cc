// fcvm logs: the container's output, or the guest's serial console.
#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {

Command logs_command() {
  return {{"logs"}, "print a VM's container output (or --console: its serial console)",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("logs options");
    desc.add_options()
        ("name", po::value<std::string>(), "VM name or id")
        ("console", "print the guest's serial console instead")
        ("follow,f", "keep printing while the VM runs");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse_command_line(ctx, "logs [OPTIONS] NAME", desc, pos, args);
    if (!vm.count("name")) throw CliError("logs needs a VM name (see 'fcvm ls')", kUsageExit);
    LogOptions options;
    options.console = vm.count("console") > 0;
    options.follow = vm.count("follow") > 0;
    check_engine(ctx.engine().logs(vm_ref(vm), options, [](std::string_view bytes) {
      std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      std::cout.flush();
      return static_cast<bool>(std::cout);
    }));
    return 0;
  }};
}

}  // namespace fcvm::cli
