// Reaching a running VM's fcvm process: its control socket (the host control protocol).
#pragma once

#include "control/control_client.h"
#include "state/vm_record.h"

namespace fcvm {

// A connection to the control socket of a running VM's fcvm process. Errors name the VM
// and, where it is, that the VM belongs to another user.
Result<control::ControlClient> connect_control(const VmRecord& record);

}  // namespace fcvm
