// VmSession: the life of one VM in this process, whatever started it.
//
//   record -> disks -> network -> spec -> launch or restore -> attach -> agent -> supervise
//
// The session creates the VM's state record first, then asks its VmOrigin for disks, a
// network and a running VMM (an ImageBoot boots a kernel from an image; a SnapshotRestore
// restores a clone from a snapshot), connects to the guest agent and supervises the VM until
// it ends. Every lease is held by a guard as soon as it exists and is given back in reverse
// order (VM, network, disks, record) on every path: success, failure, signal.
//
// Errors are Result values naming the step and the cause; nothing here throws. The session
// knows nothing of the front ends: the Engine (engine/) runs it for `podman run` and `snapshot
// run`, with the backends their caller chose.
//
// Threading: one thread owns a session; run() blocks it until the VM is gone.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fcvm/agent_plan.h>

#include "agent/agent_channel.h"
#include "fcvm/log.h"
#include "fcvm/network.h"
#include "fcvm/result.h"
#include "fcvm/storage.h"
#include "fcvm/vmm.h"
#include "health/health_check.h"
#include "supervise/output_chunk.h"
#include "session/lease_guard.h"
#include "snapshot/snapshot_manifest.h"
#include "state/vm_record.h"

namespace fcvm {

class HealthMonitor;
class StateStore;
struct SnapshotSource;

// What the session needs from the process that runs it; borrowed, must outlive the session.
struct SessionServices {
  StateStore& state;
  std::filesystem::path data_dir;  // VM directories go to <data_dir>/vms/<id>
  LoggerPtr log;
};

// The backends the caller chose. The session shares ownership for its whole life.
struct SessionBackends {
  std::shared_ptr<VmmBackend> vmm;
  std::shared_ptr<StorageBackend> storage;
  std::shared_ptr<NetworkBackend> network;    // null: the VM gets no NIC
  std::map<PluginKind, std::string> names;    // recorded in the state record, for `fcvm gc`
};

// Defaults for `fcvm exec` sessions in the guest: environment, working directory and user
// come from the container's main process; --user names are resolved in `rootfs`.
struct ExecDefaults {
  agent::Process main_process;
  std::filesystem::path rootfs;
};

// Where a session's VM comes from. The session calls each step at most once, in the order
// declared, and owns what they return (releasing it through the same backend); an origin
// holds no OS resources of its own. Steps return errors as Result and must not throw.
class VmOrigin {
 public:
  virtual ~VmOrigin() = default;

  // Refuses, before anything is created, a VMM that cannot do what this origin needs; the
  // message names the pairing (`vmm_name` and the need) and the fix.
  virtual Status check(const VmmCapabilities& vmm, const std::string& vmm_name) const = 0;
  // Fills what the record says about the VM's source (type, image or snapshot name).
  virtual void describe(VmRecord& record) const = 0;
  // The VM's disks, created under `vm_dir`.
  virtual Result<DiskLease> create_disks(StorageBackend& storage,
                                         const std::filesystem::path& vm_dir) = 0;
  // The VM's network, before its VMM starts.
  virtual Result<NetworkLease> create_network(NetworkBackend& network,
                                              const NetworkRequest& request) = 0;
  // Starts the VMM. `layout` holds the VM's own directory, drives, NICs, sockets and
  // namespaces; the origin adds the rest (a boot: kernel and machine size; a restore: the
  // snapshot and its memory source).
  virtual Result<std::unique_ptr<Vm>> start(VmmBackend& vmm, const VmSpec& layout) = 0;
  // The plan the agent gets after its HELLO, for a guest that boots; nullopt for a guest
  // that already runs its container (a restored clone).
  virtual std::optional<agent::Plan> plan(const std::string& hostname, const DiskLease& disks,
                                          const std::optional<NetworkLease>& network) const = 0;
  virtual ExecDefaults exec_defaults() const = 0;
  // The guest machine this origin builds, for snapshots of the VM; empty when not known.
  virtual GuestMachine machine() const { return {}; }
  // For a restored guest that holds at its startup barrier (a startup snapshot's): the GO
  // that starts its container as `hostname`. nullopt (the default): nothing is held.
  virtual std::optional<agent::GoRequest> go(const std::string& hostname) const {
    (void)hostname;
    return std::nullopt;
  }
  // Output the container sent before this VM existed, shown before any of its own (a
  // startup snapshot taken once healthy); empty by default.
  virtual std::vector<OutputChunk> replayed_output() const { return {}; }
  // Checks, once the agent channel is up and before the VM counts as started, that the
  // guest is the one this origin promised (a clone: the snapshot's guest continuing, not a
  // fresh boot), and returns the guest agent's boot id ("" until its HELLO tells it). May
  // exchange frames on `agent`; the default accepts any guest.
  virtual Result<std::string> verify_guest(AgentChannel& agent) {
    (void)agent;
    return std::string();
  }
  // After verify_guest: the sessions the guest agent still has (a restored guest's, from a
  // snapshot taken while they ran); none by default.
  virtual std::vector<std::uint32_t> guest_sessions() const { return {}; }
  // The error to report when the guest's agent could not be reached at all (`why`), e.g.
  // because the VMM exited at once; the default reports `why` as it is.
  virtual Status agent_unreachable(Status why) const { return why; }
};

struct VmSessionOptions {
  std::optional<std::string> name;  // generated ("fcvm-xxxxxx") when absent
  std::optional<std::string> hostname;  // the guest's (--hostname); the VM's name when absent
  int stop_signal = SIGTERM;         // --stop-signal: what a stop sends the container first
  std::vector<PortMapping> ports;   // published ports; need a network backend
  // Keep the record and logs of a VM whose container exited (podman without --rm).
  bool keep_exited = true;
  bool forward_output = true;       // container output also to our stdout/stderr
  bool forward_stdin = false;       // -i: our stdin feeds the container's process
  std::optional<agent::WindowSize> tty;  // -t: the process gets a guest terminal this size
  std::uint64_t log_max_bytes = 0;  // cap on the container and console logs; 0: none
  // Stop the VM gracefully when this process exits (a clone's `snapshot serve`).
  std::optional<ProcessIdentity> stop_with;
  // --health-*: checks run once the container runs; their state goes to the record.
  HealthCheckSpec health;
};

// The MMDS data store of a booting VM whose VMM serves MMDS (VmmCapabilities::mmds):
// {"fcvm": {"plan": <the agent's Plan as JSON, agent_plan.h>}}.
nlohmann::json mmds_for_plan(const agent::Plan& plan);

class VmSession {
 public:
  VmSession(SessionServices services, SessionBackends backends, VmSessionOptions options);
  // Tears down whatever is still held, in reverse order of creation.
  ~VmSession();
  VmSession(const VmSession&) = delete;
  VmSession& operator=(const VmSession&) = delete;

  // Checks, before anything is created, that the backends can run here (probe), that
  // ports have a network and that the name is valid and free. run() calls it unless it
  // passed already; callers with slow work to do first (an image pull) call it earlier.
  Status check();

  // Runs the VM from `origin` to its end, then tears it down. Returns the container's exit
  // code (128+N when killed by signal N), or the first failure; on failure everything the
  // session created is gone (record, directory, disks, network, VMM). Call once.
  Result<int> run(VmOrigin& origin);

  // Called once the container's process runs (a detached run reports success here). Set
  // before run().
  void set_on_started(std::function<void()> on_started) { on_started_ = std::move(on_started); }
  // Called on the VM's loop after every health probe, with the new state (the record has
  // it already). Set before run().
  void set_on_health(std::function<void(const HealthState&)> on_health) { on_health_ = std::move(on_health); }
  bool health_checked() const { return options_.health.enabled(); }

  // Makes a booting guest hold at its startup barrier (root, network and /etc set up, the
  // container not yet started) and snapshots it there as the startup snapshot of
  // `cache_key` (session/startup_cache.h), then lets it go. `at_healthy` (with a health check):
  // nothing holds; the running guest is snapshotted at its first healthy probe, with the
  // output it had sent. A snapshot that cannot be taken (or that a concurrent run took
  // first) is logged and the run goes on. Set before run().
  void set_startup_snapshot(std::string cache_key, bool at_healthy = false) {
    startup_cache_key_ = std::move(cache_key);
    startup_at_healthy_ = at_healthy;
  }

  const std::string& name() const { return name_; }
  // --hostname, else the name with '_' (which VM names may hold) as '-', which hostnames take.
  std::string guest_hostname() const;
  // <data_dir>/vms/<id> once run() created it, else empty.
  const std::filesystem::path& vm_dir() const { return vm_dir_; }

 private:
  class RecordGuard;
  Result<int> run_steps(VmOrigin& origin);
  Status update_record(const std::function<void(VmRecord&)>& change);
  // The startup snapshot of `source` (set_startup_snapshot), at the barrier or once healthy;
  // true when taken. `paused`: the caller paused the VM and resumes it.
  bool take_startup_snapshot(const SnapshotSource& source, const std::string& boot_id, bool paused = false);
  // Once the container runs after a startup snapshot was taken: evicts the least recently
  // used entries beyond kStartupCacheEntries.
  void prune_startup_cache();
  // The health checks of options_.health, their state "starting" in the record.
  // `at_first_healthy` is called once, on the loop, with the first healthy state's report
  // to on_health_, which it makes once its own work is done.
  Result<std::unique_ptr<HealthMonitor>> start_health_monitor(
      const agent::Process& main_process, std::function<void(std::function<void()>)> at_first_healthy);
  VmSpec layout() const;
  // The one place that reaches the guest agent.
  Result<AgentChannel> connect_agent(const VmSpec& layout);
  // Stops the VM and gives back every lease, newest first. Idempotent.
  void teardown();

  SessionServices services_;
  SessionBackends backends_;
  VmSessionOptions options_;
  std::function<void()> on_started_;
  std::optional<std::string> startup_cache_key_;
  bool startup_at_healthy_ = false;
  std::function<void(const HealthState&)> on_health_;
  bool checked_ = false;
  std::string name_;
  LoggerPtr log_;
  std::filesystem::path vm_dir_;
  // Declared in creation order: destroyed VM first, record last.
  std::unique_ptr<RecordGuard> record_;
  LeaseGuard<DiskLease> disks_;
  LeaseGuard<NetworkLease> network_;
  std::unique_ptr<Vm> vm_;
  std::string image_;  // the record's image, for snapshots of this VM
};

}  // namespace fcvm
