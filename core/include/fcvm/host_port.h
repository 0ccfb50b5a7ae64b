// Checks on host ports a VM wants to publish, shared by the network plugins.
#pragma once

#include <string>

#include "fcvm/network.h"
#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

// invalid_argument for a mapping no backend can publish (proto other than tcp/udp, a host
// IP that is not IPv4, port 0); the message names the -p value and the fix.
FCVM_SDK_API Status validate_port_mapping(const PortMapping& port);

// already_exists when a socket of `port.proto` cannot bind port.host_ip:port.host_port in the
// calling thread's namespace because something holds it; the probe socket is closed again.
FCVM_SDK_API Status check_host_port_free(const PortMapping& port);

// True when two mappings would claim the same host port (same proto and port, and the
// same address or either is 0.0.0.0).
FCVM_SDK_API bool host_ports_overlap(const PortMapping& a, const PortMapping& b);

// "tcp 0.0.0.0:8080 -> 80"
FCVM_SDK_API std::string describe(const PortMapping& port);

}  // namespace fcvm
