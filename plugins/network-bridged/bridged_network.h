// network-bridged: one network namespace per VM, joined to the host by a veth pair, with
// the VMM's tap inside (Firecracker's network-for-clones layout).
//
//   host: fv<id> 172.30.N.1/30 ── ns fcvm-<id>: veth0 172.30.N.2/30, tap0 10.0.2.2/24 ── guest 10.0.2.15
//
// The /30 comes from a pool and is recorded in the lease. Subnets, host ports and the nft
// table belong to the whole host, so the allocations do too: one AllocationFile per host
// (kHostAllocations, locked across processes), whichever data dir a VM's fcvm uses. It lives
// in /run because what it hands out (namespaces, veths, nft chains) does not outlive a boot. Inside the namespace, nftables DNATs what
// arrives for veth0's address to the guest and masquerades the guest's egress; so every VM
// and every clone of a snapshot sees the same guest address and gateway, and a clone is
// reached through its own /30 and its own published ports. On the host, fcvm's table
// "ip fcvm" holds three chains per VM (vm_<id>_pre/_out/_post): DNAT of published ports on
// prerouting (other machines) and output (the host itself), and masquerade for the VM's
// egress and for 127.0.0.0/8 clients (with route_localnet on the host veth).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "fcvm/allocation_file.h"
#include "fcvm/log.h"
#include "fcvm/network.h"

namespace fcvm::bridged {

inline constexpr const char* kPluginName = "network-bridged";
inline constexpr const char* kHostAllocations = "/run/fcvm/network-bridged/subnets.json";

struct Options {
  std::uint32_t pool_base = 0;  // host byte order, aligned to the pool's prefix
  int pool_prefix = 16;
  std::string pool_text = "172.30.0.0/16";
  std::string guest_address = "10.0.2.15/24";
  std::string guest_gateway = "10.0.2.2";  // tap0's address inside the namespace
  std::vector<std::string> dns;            // default: the host's non-loopback nameservers
  unsigned mtu = 1500;
  // Sets net.ipv4.ip_forward=1 on the host when it is 0: needed for the guest's egress to
  // other machines and for published ports reached from other machines (not for the host).
  bool ip_forward = true;

  // Reads plugin_config."network-bridged": pool, guest_address, guest_gateway, dns, mtu,
  // ip_forward. invalid_argument naming the key on a bad value.
  static Result<Options> from_json(const nlohmann::json& config);
  std::uint32_t capacity() const { return 1u << (30 - pool_prefix); }
};

// What a lease's `extra` holds; teardown works from it alone.
struct BridgedState {
  std::string netns;      // "fcvm-<id>"
  std::string host_veth;  // "fv<id>"
  std::string subnet;     // "172.30.0.4/30"
  std::string host_ip;    // .1: the host's end
  std::string ns_ip;      // .2: what published ports DNAT to
  std::vector<std::string> chains;  // in fcvm's host table "ip fcvm"
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(BridgedState, netns, host_veth, subnet, host_ip, ns_ip,
                                                chains)

class BridgedNetwork final : public NetworkBackend {
 public:
  // `allocations`: the host's allocation file (kHostAllocations; tests pass their own along
  // with a pool of their own).
  BridgedNetwork(std::filesystem::path allocations, Options options, LoggerPtr log);

  Probe probe() override;
  Result<NetworkLease> setup(const NetworkRequest& request) override;
  Status attach(NetworkLease& lease, pid_t vmm_pid) override;
  Result<NetworkLease> setup_clone(const NetworkLease& snapshot_lease, const NetworkRequest& request) override;
  Status teardown(const NetworkLease& lease) override;

  // The nft script for the host side of one VM (exposed for tests).
  static std::string host_rules(const std::string& vm_id, const BridgedState& state,
                                const std::vector<PortMapping>& ports);

 private:
  Result<NetworkLease> create(const NetworkRequest& request, GuestNetwork guest, const std::string& tap);
  // The lowest slot of the pool whose /30 no holder in `doc` has; nullopt when all are.
  std::optional<std::uint32_t> lowest_free_subnet(const nlohmann::json& doc) const;

  Options options_;
  LoggerPtr log_;
  AllocationFile allocations_;
};

}  // namespace fcvm::bridged
