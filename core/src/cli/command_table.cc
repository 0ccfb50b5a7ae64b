#include "cli/command.h"
#include "cli/commands.h"

namespace fcvm::cli {

const std::vector<Command>& command_table() {
  static const std::vector<Command> table = {
      podman_run_command(),
      exec_command(),
      ls_command(),
      stop_command(),
      pause_command(),
      unpause_command(),
      healthcheck_run_command(),
      logs_command(),
      inspect_command(),
      stats_command(),
      events_command(),
      top_command(),
      snapshot_create_command(),
      snapshot_ls_command(),
      snapshot_rm_command(),
      snapshot_serve_command(),
      snapshot_run_command(),
      rm_command(),
      gc_command(),
      image_ls_command(),
      image_rm_command(),
      setup_command(),
      setup_kernel_command(),
      setup_initramfs_command(),
      setup_storage_command(),
      setup_preflight_command(),
      plugins_command(),
      config_show_command(),
  };
  return table;
}

}  // namespace fcvm::cli
