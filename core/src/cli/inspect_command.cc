// fcvm inspect: everything fcvm knows about a VM, as JSON.
#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {

Command inspect_command() {
  return {{"inspect"}, "print a VM's record, image config and files as JSON",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("inspect options");
    desc.add_options()("name", po::value<std::string>(), "VM name or id");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse_command_line(ctx, "inspect NAME", desc, pos, args);
    if (!vm.count("name")) throw CliError("inspect needs a VM name (see 'fcvm ls')", kUsageExit);
    const nlohmann::json out = check_engine(ctx.engine().inspect(vm_ref(vm)));
    std::cout << out.dump(2) << "\n";
    return 0;
  }};
}

}  // namespace fcvm::cli
