// Finding the VM a command names: by name or id, or by the PID of its fcvm process.
#pragma once

#include <optional>
#include <string>

#include "cli/command.h"
#include "control/control_client.h"
#include "state/vm_record.h"

namespace fcvm::cli {

// The record named `name_or_id`, or of process `pid`. Throws CliError naming what was not
// found and how to list what exists.
VmRecord find_vm(CommandContext& ctx, const std::optional<std::string>& name_or_id,
                 const std::optional<int>& pid);

// A connection to the control socket of a running VM's fcvm process (the host control
// protocol: exec, stop). Errors name the VM and the socket.
Result<control::ControlClient> connect_control(const VmRecord& record);

}  // namespace fcvm::cli
