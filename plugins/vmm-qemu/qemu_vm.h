// QemuVm: one QEMU process and its QMP connection, as an fcvm::Vm.
//
// Threading: one thread at a time (the Vm contract). The handle owns the process: the
// destructor kills it, and QEMU itself dies with the thread that spawned it
// (PR_SET_PDEATHSIG), so no path leaves a VMM behind.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fcvm/child_exit_report.h"
#include "fcvm/child_process.h"
#include "fcvm/log.h"
#include "fcvm/result.h"
#include "fcvm/vmm.h"
#include "qmp_client.h"
#include "state_file_header.h"

namespace fcvm::qemu {

class QemuVm final : public Vm {
 public:
  struct StartOptions {
    std::vector<std::string> argv;  // from QemuCommandLine
    std::string name;
    std::filesystem::path dir;      // holds qmp.sock, qemu.log and, for a boot, mem
    std::vector<std::filesystem::path> namespaces;
    // The virtio-serial chardev socket of the agent port; empty: none.
    std::filesystem::path agent_socket;
    // The machine as the state header of a later snapshot records it.
    StateFileHeader machine;
    // True when DIR/mem is the VM's own RAM (snapshots copy it; teardown removes it): a boot,
    // or a snapshottable restore. False for a restore whose RAM is a private mapping of
    // someone else's image.
    bool owns_memory_file = true;
    // DIR/mem already holds the RAM to run on (a snapshottable restore's own copy); else a
    // VM that owns its file starts on fresh RAM.
    bool memory_file_ready = false;
    std::chrono::milliseconds qmp_timeout = std::chrono::seconds(10);
    std::vector<std::string> env_add;  // "KEY=VALUE" on top of ours (the UFFD shim's)
    // Called with QEMU's pid right after the spawn, before waiting for QMP; a failure
    // kills QEMU and fails start().
    std::function<Status(pid_t)> on_spawned;
  };

  // Spawns QEMU (stdout and stderr appended to DIR/qemu.log) and returns once its QMP
  // socket answered. If QEMU exits first, the error quotes the tail of its log. On any
  // failure the process is killed and reaped.
  static Result<std::unique_ptr<QemuVm>> start(StartOptions options, LoggerPtr log);

  ~QemuVm() override;
  QemuVm(const QemuVm&) = delete;
  QemuVm& operator=(const QemuVm&) = delete;

  // Loads a vmm-qemu state file (the stream starts at `stream_offset`) into a QEMU started
  // with -incoming defer -S, waits until the load completed (bounded by `timeout`), then
  // resumes the guest if asked.
  Status load_snapshot(const std::filesystem::path& state, std::uint64_t stream_offset,
                       bool resume, std::chrono::milliseconds timeout = std::chrono::seconds(60));

  // QEMU's run state ("running", "paused", "postmigrate", ...), from query-status.
  Result<std::string> run_state();

  // fcvm::Vm
  pid_t pid() const override;
  int exit_fd() const override;
  std::optional<ExitStatus> exited() override;
  Status pause() override;
  Status resume() override;
  Status snapshot(const SnapshotFiles& files) override;
  Status shutdown(std::chrono::milliseconds timeout) override;
  void kill() override;
  // Connects to the agent port's chardev socket. QEMU listens on it from start-up (the
  // guest side may not be open yet: then the agent's bytes simply wait).
  Result<UniqueFd> connect_agent(std::chrono::steady_clock::time_point deadline) override;

 private:
  QemuVm(StartOptions options, ChildProcess child, LoggerPtr log, off_t log_start);

  Result<nlohmann::json> qmp(std::string_view command, const nlohmann::json& arguments = nullptr,
                             std::chrono::milliseconds timeout = std::chrono::seconds(10), int fd = -1);
  // Polls query-migrate until completed; fails on failed/cancelled or after `timeout`.
  Status wait_for_migration(std::chrono::milliseconds timeout);
  Status write_state(const std::filesystem::path& state);
  // Removes the files a dead QEMU leaves in the VM directory. Idempotent.
  void remove_runtime_files();

  StartOptions options_;
  ChildProcess child_;
  LoggerPtr log_;
  ChildExitReport exits_;  // quotes qemu.log from where this QEMU's output starts
  QmpClient qmp_;
};

}  // namespace fcvm::qemu
