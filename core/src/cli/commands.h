// Constructors of the command table's entries, one per command file.
#pragma once

#include "cli/command.h"

namespace fcvm::cli {

Command podman_run_command();
Command stop_command();
Command pause_command();
Command unpause_command();
Command healthcheck_run_command();
Command logs_command();
Command inspect_command();
Command exec_command();
Command image_ls_command();
Command image_rm_command();
Command setup_command();
Command setup_kernel_command();
Command setup_initramfs_command();
Command setup_storage_command();
Command ls_command();
Command gc_command();
Command rm_command();
Command setup_preflight_command();
Command config_show_command();
Command plugins_command();
Command stats_command();
Command events_command();
Command top_command();
Command snapshot_create_command();
Command snapshot_ls_command();
Command snapshot_rm_command();
Command snapshot_serve_command();
Command snapshot_run_command();

}  // namespace fcvm::cli
