// Engine: fcvm's core API. Every front end (the CLI, later the Docker API service and the
// containerd shim) turns its protocol into calls of this class and back; none of them owns
// a VM's lifecycle, reads the state store or loads plugins itself.
//
// What an Engine is: the configuration of one caller (file < environment < flags), the
// plugins it chose, and the data dir's state store, images and snapshots. VMs are not held
// by an Engine: each VM's fcvm process (the caller's own for an attached run, a child of its
// own session for a detached one) owns it and records it in the state store, so a detached
// VM outlives whichever front end started it, and every Engine on the data dir sees it.
//
// Threading: not thread-safe; one thread uses an Engine at a time. Calls that wait (an
// attached run, serve, a followed log, an exec) block that thread; each says how it ends.
//
// Errors: Result/Status, never exceptions. The message names the thing and the fix;
// Errc::invalid_argument means the caller's input was wrong (a front end shows it as a
// usage error), Errc::not_found that a named VM, snapshot or image does not exist, anything
// else that the operation failed. A failed call leaves nothing behind that it created.
//
// Ownership: an Engine owns its config, plugin registry, state store and the backends it
// created (shared with the sessions that use them); what it returns is the caller's.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "control/control_client.h"
#include "engine/container_request.h"
#include "engine/container_run.h"
#include "engine/vm_cleanup.h"
#include "engine/vm_events.h"
#include "engine/vm_stats.h"
#include "fcvm/log.h"
#include "fcvm/plugin.h"
#include "fcvm/result.h"
#include "image/image_store.h"
#include "setup/kernel_builder.h"
#include "snapshot/snapshot_store.h"
#include "state/vm_record.h"

namespace fcvm {

class PluginRegistry;
class StateStore;

// Names a VM: by name or id, or by the PID of its fcvm process (exactly one of them).
struct VmRef {
  std::optional<std::string> name_or_id;
  std::optional<int> pid;
  static VmRef named(std::string name) { return {std::move(name), std::nullopt}; }
  static VmRef process(int pid) { return {std::nullopt, pid}; }
};

// A VM as `fcvm ls` shows it: its record, whether its process lives, and what it costs.
struct VmView {
  VmRecord record;
  bool alive = false;
  // The status a user sees: "running", "paused", "running (healthy)", "exited (3)",
  // "failed: why", "dead" (its process died without recording an exit).
  std::string status;
  // PSS of its VMM (a serve: of itself) and, for a page-served clone, its server's counters
  // of it: {"pss": {...}|null, "memory_server": {...}|null}; empty for an ended VM.
  nlohmann::json accounting;
};

struct ListFilter {
  bool all = false;  // ended VMs too
  std::optional<int> pid;
  std::optional<std::string> name;
};

struct StopOutcome {
  std::string name;
  bool killed = false;  // it did not stop in time and got SIGKILL
  std::string refusal;  // what the VM's process answered when it refused the request
};

struct GcOptions {
  bool cache = false;  // also the startup snapshots of `podman run`
};
struct GcReport {
  nlohmann::json removed = nlohmann::json::array();  // {"id","name","cleaned"} | {"snapshot"}
  nlohmann::json kept = nlohmann::json::array();     // {..., "reason"}
  int temp_files_removed = 0;
  std::filesystem::path state_dir;
};

struct LogOptions {
  bool console = false;  // the guest's serial console instead of the container's output
  bool follow = false;   // keep reading while the VM runs
};

// A snapshot as `fcvm snapshot ls` shows it.
struct SnapshotView {
  StoredSnapshot snapshot;
  std::vector<int> serve_pids;  // running serves of it
  nlohmann::json serves = nlohmann::json::array();  // {"pid", "memory_clients"} per serve
  nlohmann::json disk;  // its files' disk use (engine/vm_accounting.h disk_usage)
};

struct SnapshotCreated {
  std::string tag;
  std::optional<std::uint64_t> pause_ms;
};

struct ServeRequest {
  std::string tag;
  std::optional<std::string> name;
  bool prefetch = true;
};

// `fcvm snapshot run`: clones of a snapshot, from a running serve (`serve_pid`) or from the
// snapshot alone (`snapshot`); exactly one of them.
struct CloneRequest {
  std::optional<int> serve_pid;
  std::optional<std::string> snapshot;
  std::optional<std::string> name;  // with count > 1: NAME-1, NAME-2, ...
  std::vector<PortMapping> ports;
  bool detach = false;
  unsigned count = 1;  // detached clones to start (each its own disk and network)
  std::optional<std::filesystem::path> kernel;  // disk-only snapshots: the kernel to boot
  // Run this command in a new clone, then remove the clone (implies detach); its output
  // goes to `exec_output` (is_stderr, bytes) as it comes.
  std::vector<std::string> exec;
  std::function<void(bool is_stderr, std::string_view bytes)> exec_output;
};
struct CloneOutcome {
  std::vector<std::string> names;  // the clones started (detached)
  int exit_code = 0;  // attached: the container's; exec: the command's
};

// A command running in a VM's container (Engine::exec), spoken through the VM's control
// socket. The front end polls fd() and feeds what arrives to receive(); it owns its own
// terminal and input. Destroying it ends the command (the VM's process kills it).
class ExecSession {
 public:
  struct Event {
    enum class Kind { stdout_data, stderr_data, refused, exited } kind;
    std::string data;  // output, or the refusal's reason
    int exit_code = 0;
  };
  explicit ExecSession(control::ControlClient client, std::string vm_name)
      : client_(std::move(client)), vm_name_(std::move(vm_name)) {}
  int fd() const { return client_.fd(); }
  // Bytes queued for the VM (stdin, resizes) that the socket has not taken yet.
  std::size_t queued() const { return client_.queued(); }
  Status write_queued() { return client_.write_queued(); }
  Status send_stdin(std::string_view bytes);
  Status close_stdin();
  Status resize(std::uint16_t rows, std::uint16_t cols);
  // Reads what the socket has. Output and the exit arrive as events; `closed()` is true
  // once the VM's process hung up.
  Result<std::vector<Event>> receive();
  bool closed() const { return client_.closed(); }
  const std::string& vm_name() const { return vm_name_; }

 private:
  control::ControlClient client_;
  std::string vm_name_;
};

class Engine {
 public:
  // Loads the configuration and checks the --plugin-dir directories exist. invalid_argument
  // names the bad key or directory. Logging is configured from the config, once per process.
  static Result<std::unique_ptr<Engine>> open(const ConfigInputs& inputs);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const Config& config() const { return *config_; }
  LoggerPtr log() const { return log_; }

  // ---- plugins
  // Every plugin the user chose (flags, config) must exist and be of its kind;
  // invalid_argument names the choice, what is installed and the fix.
  Status check_plugin_choices();
  // The backend chosen for `kind` (else the kind's default; vmm: the first whose probe
  // passes), created on first use and kept. nullptr for network when none is chosen.
  Result<std::shared_ptr<Backend>> backend(PluginKind kind);
  // The name of the plugin backend(kind) uses; "" when none (network).
  Result<std::string> chosen_plugin(PluginKind kind);
  // A new backend of plugin `name`, for a front end that reports on plugins (fcvm plugins,
  // setup storage). Not cached.
  Result<std::shared_ptr<Backend>> create_backend(const std::string& name);
  PluginRegistry& plugin_registry();
  // The context plugin `name`'s factory gets: its config object, a logger tagged with its
  // name, the data dir.
  PluginContext plugin_context(const std::string& name);

  // ---- VMs
  // The record `ref` names; not_found says how to list what exists.
  Result<VmRecord> find(const VmRef& ref);
  Result<std::vector<VmView>> list(const ListFilter& filter);
  // Record, liveness, files and image config as one JSON document.
  Result<nlohmann::json> inspect(const VmRef& ref);
  // Runs a container in a new VM (container_run.h): attached, until its process ends; or
  // detached (request.detach), until it runs. Checks plugins and host room first.
  Result<ContainerOutcome> run(ContainerRequest request);
  // Starts `request` in the running VM `ref`'s container.
  Result<ExecSession> exec(const VmRef& ref, const control::ExecRequest& request);
  // Runs `args` in the running VM's container to its end, its output to `on_output`
  // (false: 1 = stdout, true: 2 = stderr); returns its exit code.
  Result<int> exec_collect(const VmRecord& vm, const std::vector<std::string>& args,
                           const std::function<void(bool is_stderr, std::string_view)>& on_output);
  // Asks the VM's process to stop its container (the guest gets `grace`), then SIGTERM,
  // then SIGKILL. A VM that is not running is left as it is.
  Result<StopOutcome> stop(const VmRef& ref, std::chrono::seconds grace);
  // Pauses or resumes a running VM's vCPUs.
  Result<std::string> pause(const VmRef& ref);
  Result<std::string> unpause(const VmRef& ref);
  // Removes an ended VM (record, logs, disks, network); `force` kills a running one first.
  // not removed: `problem` says why, and calling again retries.
  Result<VmCleanup> remove(const VmRef& ref, bool force);
  // Cleans up after every VM whose process is gone; stops clones whose serve is gone.
  Result<GcReport> gc(const GcOptions& options);
  // Writes the VM's container log (or console) to `sink` as it reads it; with follow,
  // until the VM's process is gone or `sink` returns false.
  Status logs(const VmRef& ref, const LogOptions& options, const std::function<bool(std::string_view)>& sink);
  // Runs the VM's health check now; nullopt when healthy, else why it is not.
  Result<std::optional<std::string>> health_check(const VmRef& ref);

  // Resource use of the named running VMs (every running VM with a VMM when `refs` is
  // empty), CPU measured over `sample` (this call sleeps that long). A named VM that is not
  // running is an error; unnamed ones that stop meanwhile are left out.
  Result<std::vector<VmStats>> stats(const std::vector<VmRef>& refs, std::chrono::milliseconds sample);
  // The running VM's guest processes as `podman top` shows a container's (USER PID PPID
  // %CPU ELAPSED TTY TIME COMMAND), listed by the guest agent's own binary.
  Result<std::string> top(const VmRef& ref);
  // Lifecycle events of every VM of the data dir, from now on (vm_events.h).
  Result<VmEventWatcher> watch_events();

  // ---- host setup (idempotent; cached in the data dir)
  // The guest kernel, built from linux-source once (minutes, with progress on the log).
  Result<KernelPaths> setup_kernel();
  // The initramfs holding fc-agent.
  Result<std::filesystem::path> setup_initramfs();
  // What the chosen storage backend (else storage-btrfs, the one with something to set up)
  // needs on the host; returns the plugin's name and what it did.
  Result<std::pair<std::string, std::string>> setup_storage();

  // ---- images
  Result<std::vector<StoredImage>> images();
  Status remove_image(const std::string& ref);

  // ---- snapshots
  Result<SnapshotCreated> snapshot_create(const VmRef& ref, std::optional<std::string> tag, bool disk_only);
  Result<std::vector<SnapshotView>> snapshots();
  Status snapshot_remove(const std::string& tag, bool force);
  // Serves the snapshot's memory to clones until a stop signal (blocked by the caller);
  // `on_ready` gets the page server's socket ("" for file memory) once clones may start.
  Status serve(const ServeRequest& request, const std::function<void(const std::filesystem::path&)>& on_ready);
  Result<CloneOutcome> clone(const CloneRequest& request);

 private:
  Engine() = default;
  // Unless the caller controls the data dir (state/trusted_data_dir.h): for what deletes
  // through paths that records name.
  Status require_trusted_data_dir();
  Result<std::shared_ptr<Backend>> load_backend(const std::string& name, PluginKind kind);
  BackendLoader loader();
  Result<SessionBackends> session_backends();
  SessionServices services();
  std::vector<VmRecord> live_records(VmType type);
  Result<control::Reply> ask_vm(const VmRecord& record, const control::Request& request,
                                std::chrono::milliseconds timeout, const std::string& what);
  Result<VmRecord> find_running(const VmRef& ref);
  // Sends `request` to the running VM `ref`, `verb` naming it in errors; returns the VM's name.
  Result<std::string> ask_running(const VmRef& ref, const control::Request& request, const std::string& verb);
  Status remove_snapshot(SnapshotStore& store, const StoredSnapshot& snapshot);
  Result<CloneOutcome> clone_once(const CloneRequest& request, std::optional<std::string> name);

  std::vector<std::filesystem::path> flag_plugin_dirs_;  // searched first, in this order
  std::unique_ptr<Config> config_;
  LoggerPtr log_;
  std::unique_ptr<PluginRegistry> plugins_;
  std::unique_ptr<StateStore> state_;
  std::map<PluginKind, std::shared_ptr<Backend>> backends_;
};

}  // namespace fcvm
