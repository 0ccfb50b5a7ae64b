// fcvm setup [kernel | initramfs | storage]: the guest assets every VM boots, and what a
// storage backend needs on the host.
#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {

Command setup_command() {
  return {{"setup"}, "prepare this host: guest kernel and initramfs (idempotent)",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    parse_command_line(ctx, "setup [kernel | initramfs | storage | preflight]", {}, {}, args);
    const auto kernel = check(ctx.engine().setup_kernel());
    const auto initrd = check(ctx.engine().setup_initramfs());
    std::cout << "kernel:    " << kernel.vmlinux.string() << "\ninitramfs: " << initrd.string() << "\n";
    return 0;
  }};
}

Command setup_kernel_command() {
  return {{"setup", "kernel"}, "build the guest kernel from linux-source-6.1 (cached)",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("setup kernel options");
    desc.add_options()("print-path", "print only the vmlinux path");
    auto vm = parse_command_line(ctx, "setup kernel [--print-path]", desc, {}, args);
    const auto kernel = check(ctx.engine().setup_kernel());
    if (vm.count("print-path")) {
      std::cout << kernel.vmlinux.string() << "\n";
    } else {
      std::cout << "kernel " << kernel.key << " (linux-source " << kernel.source_version << "): "
                << kernel.vmlinux.string() << "\n";
    }
    return 0;
  }};
}

Command setup_initramfs_command() {
  return {{"setup", "initramfs"}, "build the initramfs holding fc-agent (cached)",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    parse_command_line(ctx, "setup initramfs", {}, {}, args);
    std::cout << check(ctx.engine().setup_initramfs()).string() << "\n";
    return 0;
  }};
}

Command setup_storage_command() {
  return {{"setup", "storage"},
          "prepare the host for a storage backend (storage-btrfs: a loop-mounted btrfs)",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    parse_command_line(ctx, "setup storage [--storage NAME]", {}, {}, args);
    const auto [name, done] = check(ctx.engine().setup_storage());
    std::cout << name << ": " << done << "\n";
    return 0;
  }};
}

}  // namespace fcvm::cli
