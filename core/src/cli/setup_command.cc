// fcvm setup [kernel | initramfs | storage]: the guest assets every VM boots, and what a
// storage backend needs on the host.
#include <iostream>

#include "cli/commands.h"
#include "config/config.h"
#include "fcvm/storage.h"
#include "plugin/plugin_registry.h"
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
    parse_command_line(ctx, "setup [kernel | initramfs | storage | preflight]", {}, {}, args);
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

Command setup_storage_command() {
  return {{"setup", "storage"},
          "prepare the host for a storage backend (storage-btrfs: a loop-mounted btrfs)",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    parse_command_line(ctx, "setup storage [--storage NAME]", {}, {}, args);
    // The backend the user chose, else storage-btrfs: the one with something to set up.
    const auto& chosen = ctx.config().plugins;
    const auto it = chosen.find(PluginKind::storage);
    const std::string name = it != chosen.end() ? it->second : "storage-btrfs";
    auto backend = check(ctx.plugins().create_as<StorageBackend>(name, PluginKind::storage,
                                                                  ctx.plugin_context(name)));
    const std::string done = check(backend->setup_host());
    std::cout << name << ": " << done << "\n";
    return 0;
  }};
}

}  // namespace fcvm::cli
