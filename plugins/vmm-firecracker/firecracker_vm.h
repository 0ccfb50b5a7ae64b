// FirecrackerVm: one Firecracker process and its API socket, as an fcvm::Vm.
//
// Threading: one thread at a time (the Vm contract). The handle owns the process: the
// destructor kills it, and Firecracker itself dies with the thread that spawned it
// (PR_SET_PDEATHSIG), so no path leaves a VMM behind.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "api_client.h"
#include "api_request.h"
#include "fcvm/child_exit_report.h"
#include "fcvm/child_process.h"
#include "fcvm/log.h"
#include "fcvm/result.h"
#include "fcvm/vmm.h"
#include "firecracker_options.h"

namespace fcvm::firecracker {

class FirecrackerVm final : public Vm {
 public:
  struct StartOptions {
    std::string binary;                   // the firecracker executable
    std::string name;                     // for log lines
    std::filesystem::path dir;            // the VM directory; Firecracker's working directory
    std::filesystem::path console_log;    // Firecracker's stdout and stderr (serial console)
    std::filesystem::path agent_socket;   // the vsock device's unix socket
    std::vector<std::filesystem::path> namespaces;
    FirecrackerOptions options;
    // The memory image the guest's memory equals where no page is dirty (a restore's
    // image); a Diff snapshot is merged into a copy of it. Empty: none yet.
    std::filesystem::path diff_base;
    std::chrono::milliseconds api_timeout = std::chrono::seconds(10);
  };

  // Spawns `firecracker --api-sock DIR/api.sock` in DIR and returns once GET /version
  // answered with a supported version. If Firecracker exits first, the error quotes its
  // log. On any failure the process is killed and reaped.
  static Result<std::unique_ptr<FirecrackerVm>> start(StartOptions options, LoggerPtr log);

  ~FirecrackerVm() override;
  FirecrackerVm(const FirecrackerVm&) = delete;
  FirecrackerVm& operator=(const FirecrackerVm&) = delete;

  // Sends `requests` in order, each bounded by `timeout`; stops at the first failure,
  // whose message names the call (and says so when Firecracker exited meanwhile).
  Status configure(const std::vector<ApiRequest>& requests, std::chrono::milliseconds timeout);

  // Firecracker's instance state: "Not started", "Running" or "Paused" (GET /).
  Result<std::string> instance_state();

  // fcvm::Vm
  pid_t pid() const override;
  int exit_fd() const override;
  std::optional<ExitStatus> exited() override;
  Status pause() override;
  Status resume() override;
  // Full (default) or, with vmm option snapshot_type Diff and a known base image, Diff:
  // the base is copied (reflink or sparse) to a temp name, Firecracker merges the dirty
  // pages into that copy, and it is renamed into place. The first snapshot of a VM booted
  // fresh is always Full.
  Status snapshot(const SnapshotFiles& files) override;
  // Running guest: SendCtrlAltDel (the guest reboots, and with reboot=k Firecracker exits),
  // waits up to `timeout`; then, or for a paused guest, SIGKILL.
  Status shutdown(std::chrono::milliseconds timeout) override;
  void kill() override;
  // Firecracker's vsock host protocol on the agent socket, port kAgentVsockPort.
  Result<UniqueFd> connect_agent(std::chrono::steady_clock::time_point deadline) override;

 private:
  FirecrackerVm(StartOptions options, ChildProcess child, LoggerPtr log, off_t console_start);

  Result<std::string> call(const ApiRequest& request, std::chrono::milliseconds timeout);
  Status write_snapshot(const SnapshotFiles& files, SnapshotType type);
  void remove_runtime_files();

  StartOptions options_;
  ChildProcess child_;
  LoggerPtr log_;
  // Quotes Firecracker's log, else the console log from where this process's output starts.
  ChildExitReport exits_;
  ApiClient api_;
};

}  // namespace fcvm::firecracker
