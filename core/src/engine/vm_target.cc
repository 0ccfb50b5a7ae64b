#include "engine/vm_target.h"

namespace fcvm {

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

}  // namespace fcvm
