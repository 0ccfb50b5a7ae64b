#include "cli/vm_target.h"

#include "state/state_store.h"

namespace fcvm::cli {

VmRecord find_vm(CommandContext& ctx, const std::optional<std::string>& name_or_id,
                 const std::optional<int>& pid) {
  if (name_or_id.has_value() == pid.has_value()) {
    throw CliError("name a VM, or give --pid N (not both)", kUsageExit);
  }
  auto record = name_or_id ? ctx.state().find(*name_or_id) : ctx.state().find_by_pid(*pid);
  if (!record) {
    throw CliError(record.status().message() +
                   (record.status().code() == Errc::not_found ? " (see 'fcvm ls')" : ""));
  }
  return *record;
}

Result<control::ControlClient> connect_control(const VmRecord& record) {
  auto client = control::ControlClient::connect(record.vm_dir / "control.sock");
  if (!client) {
    if (client.status().message().find("Permission denied") != std::string::npos) {
      return client.status().with_context(
          "cannot reach " + record.name +
          " (the VM belongs to another user: run this as that user or as root): ");
    }
    return client.status().with_context("cannot reach " + record.name +
                                        " (is its container still starting?): ");
  }
  return client;
}

}  // namespace fcvm::cli
