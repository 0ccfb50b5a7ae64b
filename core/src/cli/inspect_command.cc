// fcvm inspect: everything fcvm knows about a VM, as JSON.
#include <iostream>

#include "cli/commands.h"
#include "cli/vm_target.h"
#include "config/config.h"
#include "image/image_store.h"

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
    const VmRecord record = find_vm(ctx, vm["name"].as<std::string>(), std::nullopt);
    nlohmann::json out = to_json(record);
    out["alive"] = record.alive();
    if (!record.vm_dir.empty()) {
      out["files"] = {{"console_log", record.vm_dir / "console.log"},
                      {"container_log", record.vm_dir / "container.log"},
                      {"control_socket", record.vm_dir / "control.sock"}};
    }
    if (!record.image.empty()) {
      if (auto image = ImageStore(ctx.config().data_dir).resolve(record.image)) {
        out["image_digest"] = image->digest;
        out["image_config"] = image->config;
      }
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }};
}

}  // namespace fcvm::cli
