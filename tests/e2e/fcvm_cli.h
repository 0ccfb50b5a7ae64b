// Runs the built fcvm binary for end-to-end tests, each suite with its own data dir.
#pragma once

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fcvm/child_process.h"
#include "fcvm/temp_dir.h"

namespace fcvm::test {

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
};

// How run() starts fcvm, beyond its arguments.
struct RunOptions {
  std::vector<std::string> env_add;  // extra KEY=VALUE entries
  // Run as this user (through setpriv, no supplementary groups); root when unset.
  std::optional<std::pair<uid_t, gid_t>> as_user;
};

// A temp data dir and the paths the suite needs; removed on destruction.
class FcvmCli {
 public:
  // `vmm`: every command runs with `--vmm VMM`; empty: fcvm's own choice.
  explicit FcvmCli(std::string vmm = {});
  ~FcvmCli();

  // Why the chosen VMM plugin cannot run here, as `fcvm plugins --json` reports its probe;
  // empty when it can (or when no VMM was chosen).
  std::string vmm_unavailable() const;

  // Why the suite cannot run here (no kernel, not root), or empty.
  static std::string missing_prerequisite();

  // Runs `fcvm --data-dir DIR ARGS...` to completion.
  CliResult run(const std::vector<std::string>& args, const RunOptions& options = {}) const;
  // Starts it in the background; stdout/stderr go to files under the data dir.
  ChildProcess start(const std::vector<std::string>& args) const;

  // The example image reference (built once per process).
  static std::string hello_image();
  static std::filesystem::path kernel();

  const std::filesystem::path& data_dir() const { return data_dir_.path(); }
  std::vector<std::string> base_args() const;
  // Every record, running or not (`ls -a --json`).
  nlohmann::json ls() const;
  // The record named `name` from `fcvm ls --json`, or null.
  nlohmann::json record(const std::string& name) const;
  // Waits until `name` has status `status` (true) or the timeout passes (false).
  bool wait_status(const std::string& name, const std::string& status,
                   std::chrono::seconds timeout) const;
  // What of this data dir is still on the host: processes naming it (VMMs, fcvm processes,
  // slirp4netns), mounts and loop devices under it, unfinished snapshots. The destructor
  // stops every VM, collects, and fails the test for each one.
  std::vector<std::string> leaks() const;

 private:
  TempDir data_dir_;
  std::string vmm_;
};

// The VMM plugins the suites that boot VMs run against (each SKIPPED where its probe says
// it cannot run), and a test-name-safe spelling of a plugin name ("vmm-qemu" → "vmm_qemu").
inline const std::vector<std::string> kVmmPlugins = {"vmm-qemu", "vmm-firecracker"};
std::string test_param_name(std::string plugin);

// PIDs of processes whose command line contains `needle`.
std::vector<pid_t> processes_matching(const std::string& needle);

// The VMM process a record names (vmm_pid, vmm_pid_start_time) while it still runs; 0 when
// it has ended (or was never recorded). Works for every VMM plugin alike.
pid_t live_vmm(const nlohmann::json& record);

}  // namespace fcvm::test
