// ApiRequest and FirecrackerRequests: every HTTP request the plugin sends to Firecracker,
// built by pure functions (no I/O) so tests can enumerate the bodies and validate each
// against Firecracker's API description (firecracker.yaml).
//
// Path conventions (see README.md): Firecracker runs with its working directory set to the
// VM directory, and drives inside that directory are given to it by relative path, so a
// snapshot refers to them by relative layout and a clone started in its own directory with
// the same layout opens its own copies.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fcvm/result.h"
#include "fcvm/vmm.h"
#include "firecracker_options.h"

namespace fcvm::firecracker {

struct ApiRequest {
  std::string method;         // "GET", "PUT", "PATCH"
  std::string path;           // "/drives/root"
  std::string path_template;  // "/drives/{drive_id}", as firecracker.yaml names the path
  nlohmann::json body;        // null: no body

  // "PUT /drives/root", for messages.
  std::string describe() const { return method + " " + path; }
};

// The files Firecracker writes for a VM, all in the VM directory.
struct VmFiles {
  static std::filesystem::path api_socket(const std::filesystem::path& dir) { return dir / "api.sock"; }
  static std::filesystem::path log(const std::filesystem::path& dir) { return dir / "firecracker.log"; }
  static std::filesystem::path metrics(const std::filesystem::path& dir) { return dir / "firecracker.metrics"; }
};

// Firecracker's default limit on a request body, and so on the MMDS data store
// (--http-api-max-payload-size, --mmds-size-limit).
inline constexpr std::size_t kMaxMmdsBytes = 51200;

// The guest CID of the vsock device (2 is the host; 3 is the first guest CID).
inline constexpr unsigned kGuestCid = 3;

class FirecrackerRequests {
 public:
  // The whole configuration of a fresh boot, in the order Firecracker needs it: logger,
  // metrics, machine-config, boot-source, drives, network interfaces, MMDS (config, then
  // the data store; needs a NIC), vsock, then InstanceStart. Fails with invalid_argument
  // on a spec Firecracker would refuse (vcpus outside 1..32, drive or NIC ids outside
  // [A-Za-z0-9_], MMDS data that is not an object, over kMaxMmdsBytes or without a NIC).
  static Result<std::vector<ApiRequest>> boot(const VmSpec& spec, const FirecrackerOptions& options);

  // A restore: logger and metrics (the only calls allowed before a load), then
  // /snapshot/load with the memory backend, the clone's taps and vsock socket. Fails with
  // invalid_argument without a state file, memory source or agent socket.
  static Result<std::vector<ApiRequest>> restore(const RestoreSpec& spec,
                                                 const FirecrackerOptions& options);

  static ApiRequest logger(const std::filesystem::path& dir);
  static ApiRequest metrics(const std::filesystem::path& dir);
  static ApiRequest machine_config(const VmSpec& spec, const FirecrackerOptions& options);
  static ApiRequest boot_source(const VmSpec& spec);
  // `dir` is the VM directory: a drive inside it is given by its path relative to `dir`.
  static ApiRequest drive(const Drive& drive, const std::filesystem::path& dir);
  static ApiRequest network_interface(const Nic& nic);
  static ApiRequest mmds_config(const std::vector<Nic>& nics);
  static ApiRequest mmds_data(const nlohmann::json& data);
  static ApiRequest vsock(const std::filesystem::path& uds_path);
  // A virtio-rng device fed from the host (no rate limit).
  static ApiRequest entropy();
  static ApiRequest instance_start();
  static ApiRequest send_ctrl_alt_del();
  static ApiRequest pause();
  static ApiRequest resume();
  static ApiRequest snapshot_create(const std::filesystem::path& state,
                                    const std::filesystem::path& memory, SnapshotType type);
  static ApiRequest snapshot_load(const RestoreSpec& spec, const FirecrackerOptions& options);
  static ApiRequest describe_instance();  // GET /: {"state": "Running" | "Paused" | ...}
  static ApiRequest version();            // GET /version

  // The kernel command line Firecracker gets: `cmdline` plus reboot=k (a guest reboot ends
  // Firecracker; x86 Firecracker cannot power off) and the i8042 options of Firecracker's
  // default command line, each unless `cmdline` sets that key already. Firecracker appends
  // the virtio_mmio.device= arguments of its devices itself.
  static std::string boot_args(const std::string& cmdline);

  // How Firecracker sees `path` when its working directory is `dir`: relative when inside.
  static std::string path_for_vmm(const std::filesystem::path& path, const std::filesystem::path& dir);
};

}  // namespace fcvm::firecracker
