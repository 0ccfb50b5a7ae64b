// Interface configuration with ioctls only: the image may carry no `ip` tool, and the agent
// runs before anything else exists. IPv4 only in protocol version 1.
#pragma once

#include "device_finder.h"
#include "fcvm/agent_plan.h"

namespace fcvm::agent {

class NetworkSetup {
 public:
  // Brings `lo` up; the kernel then assigns 127.0.0.1/8 and ::1 itself. Throws SetupError.
  static void bring_up_loopback();

  // Finds the interface with net.mac, renames it eth0 when that name is free, and sets its
  // MTU, address, netmask, state up and the default route via net.gateway. Throws
  // SetupError naming the interface and the step.
  static void configure(const Network& net, const DeviceFinder& devices);
};

}  // namespace fcvm::agent
