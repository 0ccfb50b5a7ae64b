// fcvm logs: the container's output, or the guest's serial console.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "cli/vm_target.h"

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
    const VmRecord record = find_vm(ctx, vm["name"].as<std::string>(), std::nullopt);
    const auto file = record.vm_dir / (vm.count("console") ? "console.log" : "container.log");
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      const int why = errno;
      if (why == EACCES || why == EPERM) {
        throw CliError("cannot read " + file.string() + ": " + std::strerror(why) +
                       "; the VM belongs to another user: run 'fcvm logs' as that user or as root");
      }
      if (!record.alive()) throw CliError("no logs for " + record.name + " at " + file.string());
    }
    const bool follow = vm.count("follow") > 0;
    char buf[65536];
    // A rotated container log (see log_max_bytes) comes first.
    if (!vm.count("console")) {
      std::ifstream rotated(file.string() + ".1", std::ios::binary);
      while (rotated.read(buf, sizeof buf) || rotated.gcount() > 0) {
        std::cout.write(buf, rotated.gcount());
      }
    }
    for (;;) {
      for (;;) {
        in.read(buf, sizeof buf);
        if (in.gcount() <= 0) break;
        std::cout.write(buf, in.gcount());
      }
      std::cout.flush();
      if (!follow || !record.alive()) break;
      in.clear();
      if (!in.is_open()) in.open(file, std::ios::binary);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return 0;
  }};
}

}  // namespace fcvm::cli
