// fcvm setup [kernel | initramfs]: the guest assets every VM boots.
#include <iostream>

#include "cli/commands.h"
#include "config/config.h"
#include "run/guest_assets.h"
#include "setup/initramfs_builder.h"
#include "setup/kernel_builder.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

KernelPaths setup_kernel(CommandContext& ctx) {
  KernelBuildOptions opts;
  opts.data_dir = ctx.config().data_dir;
  return check(KernelBuilder(opts, ctx.log()->child("kernel")).ensure());
}

std::filesystem::path setup_initramfs(CommandContext& ctx) {
  return check(InitramfsBuilder(ctx.config().data_dir, ctx.log()->child("initramfs")).ensure(agent_binary_path()));
}

}  // namespace

Command setup_command() {
  return {{"setup"}, "prepare this host: guest kernel and initramfs (idempotent)",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    parse_command_line(ctx, "setup [kernel | initramfs | preflight]", {}, {}, args);
    const auto kernel = setup_kernel(ctx);
    const auto initrd = setup_initramfs(ctx);
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
    const auto kernel = setup_kernel(ctx);
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
    std::cout << setup_initramfs(ctx).string() << "\n";
    return 0;
  }};
}

}  // namespace fcvm::cli
