// Finding the VM a command names: by name or id, or by the PID of its fcvm process.
#pragma once

#include <chrono>
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

// The running VM that parsed options "name" (positional) or "pid" name; throws CliError
// when there is none or it is not running.
VmRecord find_running_vm(CommandContext& ctx, const boost::program_options::variables_map& options);

// A connection to the control socket of a running VM's fcvm process (the host control
// protocol: exec, stop). Errors name the VM and the socket.
Result<control::ControlClient> connect_control(const VmRecord& record);

// Sends `request` to the fcvm process of the running VM `record` and waits up to `timeout`
// for its reply. Throws CliError when the VM cannot be reached, does not answer, or refuses
// (with the VM's reason, prefixed by `what`).
control::Reply ask_vm(const VmRecord& record, const control::Request& request,
                      std::chrono::milliseconds timeout, const std::string& what);

}  // namespace fcvm::cli
