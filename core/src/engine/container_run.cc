#include "engine/container_run.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>

#include "fcvm/atomic_file.h"
#include "image/image_store.h"
#include "plugin/plugin_registry.h"
#include "supervise/container_supervisor.h"
#include "session/guest_assets.h"
#include "engine/process_title.h"
#include "session/startup_cache.h"
#include "supervise/terminal.h"
#include "session/image_boot.h"
#include "session/snapshot_restore.h"
#include "snapshot/snapshot_store.h"

namespace fcvm {

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

// -d: the VM is owned by a child in its own session; the parent waits until the container
// runs (or fails) and reports. The child's own PID is what the state record holds.
Result<int> run_detached(VmSession& session, VmOrigin& origin) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errno_status("pipe");
  UniqueFd report_read(fds[0]), report_write(fds[1]);
  std::cout.flush();
  const pid_t pid = ::fork();
  if (pid < 0) return errno_status("fork");
  if (pid == 0) {
    report_read.reset();
    ::setsid();
    // Our argv is the caller's command line, -e values and all: not for `ps` to show.
    set_process_title("fcvm: VM " + session.name());
    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    auto report = [&](const std::string& msg) {
      if (!report_write) return;
      ssize_t ignored = ::write(report_write.get(), msg.data(), msg.size());
      (void)ignored;
      report_write.reset();
    };
    // With a health check, success is the first healthy probe, not the process start.
    const bool wait_healthy = session.health_checked();
    session.set_on_started([&] {
      // From here on, the VM's own log file is our stderr.
      int log_fd = ::open((session.vm_dir() / "fcvm.log").c_str(),
                          O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (log_fd >= 0) ::dup2(log_fd, STDERR_FILENO);
      if (!wait_healthy) report("ok");
    });
    session.set_on_health([&](const HealthState& health) {
      if (health.status == HealthStatus::healthy) report("ok");
      if (health.status == HealthStatus::unhealthy) {
        report("the container is unhealthy (" + health.last_output + "); it keeps running: see 'fcvm logs " +
               session.name() + "', stop it with 'fcvm stop " + session.name() + "'");
      }
    });
    auto result = session.run(origin);
    if (!result) report(result.status().message());
    // Only reaches the parent if nothing was reported yet.
    if (result) report("the container exited with code " + std::to_string(*result) + " before it was healthy");
    std::_Exit(result ? *result : kRunFailedExit);
  }
  report_write.reset();
  std::string message;
  char buf[4096];
  for (ssize_t n; (n = ::read(report_read.get(), buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    message.append(buf, static_cast<size_t>(n));
  }
  if (message == "ok") return 0;
  return error(Errc::io, message.empty() ? "the detached VM process died while starting" : message);
}

namespace {

// The restore of the startup snapshot of `key`, or null when there is none (a miss). An
// entry under its tag that cannot be restored is removed (through `storage`, the plugin
// `storage_name`), so that this run's snapshot takes its place.
std::unique_ptr<VmOrigin> cached_start(SnapshotStore& store, const std::string& key, const std::string& image_ref,
                                       StorageBackend& storage, const std::string& storage_name,
                                       const LoggerPtr& log) {
  const std::string tag = startup_cache_tag(key);
  auto snap = store.get(tag);
  if (!snap) return nullptr;
  const SnapshotManifest& m = snap->manifest;
  auto unusable = [&](const std::string& why) -> std::unique_ptr<VmOrigin> {
    Status removed = remove_startup_snapshot(store, *snap, storage, storage_name);
    log->warn("snapshot " + tag + " " + why + "; booting" +
              (removed.ok() ? " and taking a new one" : " (it stays: " + removed.message() + ")"));
    return nullptr;
  };
  if (m.cache_key != key || m.disk_only || m.boot_id.empty()) return unusable("is not the startup snapshot of this run");
  log->info("restoring startup snapshot " + tag + " instead of booting");
  touch_startup_snapshot(snap->dir);
  SnapshotRestoreSpec spec;
  spec.snapshot_name = tag;
  spec.disks = m.disks_in(snap->dir);
  spec.network = m.network;
  spec.files = m.files(snap->dir);
  spec.memory = MemorySource{MemorySourceKind::file, spec.files.memory};
  spec.exec = ExecDefaults{m.main_process, m.rootfs};
  spec.boot_id = m.boot_id;
  spec.machine = m.machine;
  spec.startup = SnapshotRestoreSpec::Startup{image_ref};
  // To its user a cached start is an ordinary VM, which `fcvm snapshot create` takes.
  spec.snapshottable = true;
  if (m.cache_healthy) {
    // Taken with the container running: it goes on from there after what it had printed.
    auto bytes = read_file(snap->dir / m.startup_output);
    auto replay = bytes ? decode_startup_output(*bytes) : Result<std::vector<OutputChunk>>(bytes.status());
    if (!replay) return unusable("has an unreadable startup output (" + replay.status().message() + ")");
    spec.startup->held = false;
    spec.startup->replay = std::move(*replay);
  }
  return std::make_unique<SnapshotRestore>(std::move(spec));
}

}  // namespace

Result<ContainerOutcome> run_container(const ContainerRequest& req, SessionServices services,
                                       SessionBackends backends) {
  VmSessionOptions options;
  options.name = req.name;
  options.hostname = req.hostname;
  options.stop_signal = req.stop_signal;
  options.ports = req.ports;
  options.keep_exited = !req.remove;
  options.forward_output = !req.detach;
  options.health = req.health;
  options.forward_stdin = req.interactive && !req.detach;
  if (req.tty) options.tty = initial_terminal_size();
  options.log_max_bytes = req.log_max_bytes;
  const std::filesystem::path data_dir = services.data_dir;
  const LoggerPtr log = services.log;
  const auto backend_names = backends.names;
  const std::shared_ptr<StorageBackend> storage = backends.storage;
  const std::string vmm_version = PluginRegistry::plugin_version_of(backends.vmm);
  const auto caps = backends.vmm->capabilities();
  const bool can_snapshot = caps.snapshot && caps.restore_file_memory;
  VmSession session(std::move(services), std::move(backends), std::move(options));
  FCVM_RETURN_IF_ERROR(session.check());

  ImageBootSpec boot;
  boot.image_ref = req.image;
  boot.vcpus = req.vcpus;
  boot.memory_mib = req.memory_mib;
  boot.read_only = req.read_only;
  auto assets = find_guest_assets(data_dir, req.kernel, log);
  if (!assets) return assets.status();
  boot.assets = *assets;
  ImageStore images(data_dir, log->child("image"));
  auto pulled = images.pull(req.image, req.pull);
  if (!pulled) return pulled.status();
  const StoredImage& image = pulled->image;
  boot.rootfs = image.as_rootfs();
  auto process = resolve_process(image.config, req.process, image.rootfs(),
                                 [](const char* k) -> const char* { return std::getenv(k); });
  if (!process) return process.status();
  // The startup snapshot holds the process as planned, so what the supervisor adds to the
  // plan is part of it (and of its cache key): stdin and the output window. A terminal's
  // size is the user's at the moment: -t runs boot every time.
  process->stdin = req.interactive && !req.detach;
  process->output_window = kOutputWindow;
  process->init = req.init;
  boot.process = *process;

  std::unique_ptr<VmOrigin> origin;
  // -t: the terminal size is the user's at the moment. -i with a health check: the entry
  // would hold a container that has already read (or closed) the first run's stdin.
  if (req.startup_snapshot && can_snapshot && !req.tty && !(req.interactive && req.health.enabled())) {
    // With a health check, the entry holds the container once healthy, not before it starts.
    const std::string moment = startup_moment_of(req.health);
    auto key = startup_cache_key(StartupInputs{image.digest, *process, req.vcpus, req.memory_mib, req.read_only,
                                               boot.assets, backend_names, vmm_version, moment});
    if (!key) return key.status();
    SnapshotStore store(data_dir);
    const auto storage_name = backend_names.count(PluginKind::storage) ? backend_names.at(PluginKind::storage) : "";
    origin = cached_start(store, *key, req.image, *storage, storage_name, log);
    if (!origin) session.set_startup_snapshot(*key, /*at_healthy=*/!moment.empty());
  }
  if (!origin) origin = std::make_unique<ImageBoot>(std::move(boot));

  block_stop_signals();
  // -it on a terminal: keys go to the guest's terminal as they are typed (Ctrl-C too).
  // Restored when this scope ends, on every path out of the run.
  const std::optional<RawTerminal> raw = req.tty && req.interactive && !req.detach
                                             ? RawTerminal::enter(STDIN_FILENO)
                                             : std::nullopt;
  ContainerOutcome outcome{session.name(), 0};
  auto code = req.detach ? run_detached(session, *origin) : session.run(*origin);
  if (!code) return code.status();
  outcome.exit_code = *code;
  return outcome;
}

}  // namespace fcvm
