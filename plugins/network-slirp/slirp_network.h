// network-slirp: rootless networking. Needs no privilege beyond user namespaces.
//
// setup() forks a namespace holder: a process that unshares a user + network namespace
// (mapping the caller to root inside), creates a bridge br0 and the VMM's tap0 on it, and
// then waits. slirp4netns is attached to the holder (--mtu 65520, host loopback disabled,
// an API socket); its tap slirp0 joins br0, so the guest (10.0.2.15/24) talks to slirp's
// gateway 10.0.2.2 and DNS 10.0.2.3 over the bridge. The VMM joins the holder's namespaces
// (lease.namespaces) and opens tap0 by name. Published ports are added with add_hostfwd
// on the API socket and bind, unless -p names an address, to a loopback address of the
// VM's own (127.100.x.y, allocated and recorded), so two VMs can both publish 8080.
// slirp4netns does not exit when the VMM dies: teardown stops it and the holder, by PID
// and start time recorded in the lease.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "fcvm/allocation_file.h"
#include "fcvm/log.h"
#include "fcvm/network.h"

namespace fcvm::slirp {

inline constexpr const char* kPluginName = "network-slirp";

struct Options {
  std::string slirp4netns = "slirp4netns";  // program, looked up in PATH
  unsigned mtu = 65520;
  bool host_loopback = false;  // let the guest reach the host's 127.0.0.1 as 10.0.2.2
  // Loopback addresses handed to VMs: 127.100.0.1 and up (127.0.0.0/8 is all local, so
  // nothing is configured on lo; the address is only recorded).
  std::uint32_t loopback_base = (127u << 24) | (100u << 16);
  std::uint32_t loopback_capacity = 65534;

  static Result<Options> from_json(const nlohmann::json& config);
};

// A process named by PID and start time (field 22 of /proc/PID/stat), so a recycled PID is
// never signalled.
struct ProcessRef {
  pid_t pid = 0;
  std::uint64_t start_time = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ProcessRef, pid, start_time)

struct SlirpState {
  std::string vm_id;
  std::string loopback;  // "127.100.0.1"
  ProcessRef holder;
  ProcessRef slirp;
  std::string api_socket;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SlirpState, vm_id, loopback, holder, slirp, api_socket)

class SlirpNetwork final : public NetworkBackend {
 public:
  SlirpNetwork(std::filesystem::path data_dir, Options options, LoggerPtr log);

  Probe probe() override;
  Result<NetworkLease> setup(const NetworkRequest& request) override;
  Status attach(NetworkLease& lease, pid_t vmm_pid) override;
  Result<NetworkLease> setup_clone(const NetworkLease& snapshot_lease, const NetworkRequest& request) override;
  Status teardown(const NetworkLease& lease) override;

  // Why user namespaces cannot be created here, with the fix; ok when they can.
  static Status check_user_namespaces();

 private:
  Result<NetworkLease> create(const NetworkRequest& request, GuestNetwork guest, const std::string& tap);

  std::filesystem::path data_dir_;
  Options options_;
  LoggerPtr log_;
  AllocationFile allocations_;
};

}  // namespace fcvm::slirp
