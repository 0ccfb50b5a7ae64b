// NetworkBackend: gives a VM a network, and a clone of a snapshot its own copy of it.
//
// Implementations: network-bridged (netns + veth + tap + nftables NAT), network-slirp
// (user namespace + slirp4netns, rootless). Everything a backend creates is described by
// the NetworkLease it returns, which core persists in the state store; teardown works
// from the persisted lease alone, in any later process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fcvm/plugin.h"
#include "fcvm/result.h"

namespace fcvm {

struct PortMapping {
  std::string proto = "tcp";          // "tcp" | "udp"
  std::string host_ip = "0.0.0.0";
  std::uint16_t host_port = 0;
  std::uint16_t guest_port = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(PortMapping, proto, host_ip, host_port,
                                                guest_port)

// The guest side, handed to the guest agent.
struct GuestNetwork {
  std::string mac;                // of the guest NIC
  std::string address;            // "10.0.2.15/24"
  std::string gateway;            // "10.0.2.2"
  std::vector<std::string> dns;
  unsigned mtu = 1500;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(GuestNetwork, mac, address, gateway, dns, mtu)

// A random locally administered unicast MAC ("02:fc:xx:xx:xx:xx") for a new guest NIC.
FCVM_SDK_API std::string random_guest_mac();

struct NetworkRequest {
  std::string vm_id;  // the state record id: unique, [a-z0-9]; backends derive names from it
  std::string name;   // the VM's name, for log lines
  std::vector<PortMapping> ports;
};

struct NetworkLease {
  std::string plugin;  // the backend that made it
  // Namespace files the VMM joins, in order (user namespace before net namespace).
  std::vector<std::filesystem::path> namespaces;
  std::string tap;     // tap device the VMM opens, inside those namespaces
  GuestNetwork guest;
  std::vector<PortMapping> ports;
  nlohmann::json extra = nlohmann::json::object();  // backend-private (veth, nft table, pids)
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(NetworkLease, plugin, namespaces, tap, guest,
                                                ports, extra)

// Common to every method: thread-safe across different vm_ids (one VM's calls come from
// one thread); never throws (failures are Status values naming the device or rule and the
// fix); bounded in time (each call runs a few netlink/nft operations or starts a helper and
// waits at most a few seconds for it). The caller owns every lease returned: it persists
// the lease before the VMM uses the network and calls teardown() once done. A backend
// refuses (invalid_argument) a lease whose `plugin` is another backend's.
class FCVM_SDK_API NetworkBackend : public Backend {
 public:
  PluginKind kind() const final { return PluginKind::network; }

  // Creates the VM's network before its VMM starts. On failure everything created so far
  // is removed. Not idempotent: a second setup for a vm_id whose network exists fails with
  // already_exists.
  virtual Result<NetworkLease> setup(const NetworkRequest& request) = 0;

  // Called once the VMM process `vmm_pid` exists (and joined lease.namespaces), for
  // backends that attach to it (slirp4netns). May add to lease.extra, which core then
  // persists; whatever it starts is named there, so teardown() ends it. A no-op for
  // backends that need nothing. On failure the lease still describes what exists.
  virtual Status attach(NetworkLease& lease, pid_t vmm_pid) = 0;

  // Creates a clone's network from the lease recorded in a snapshot: the guest keeps the
  // snapshot's address and MAC (they are baked into guest memory); the clone gets its own
  // namespace holding a tap of the same name, and its own host-side ports. Same failure
  // rule as setup().
  virtual Result<NetworkLease> setup_clone(const NetworkLease& snapshot_lease,
                                           const NetworkRequest& request) = 0;

  // Removes everything the lease names. Idempotent: parts already gone are not errors, so
  // it may run after a crash, twice, or from `fcvm gc` in another process.
  virtual Status teardown(const NetworkLease& lease) = 0;
};

}  // namespace fcvm
