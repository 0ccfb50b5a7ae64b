// Engine: snapshots of running VMs, serving them, and their clones.
#include <unistd.h>

#include "engine/engine.h"
#include "engine/vm_accounting.h"
#include "fcvm/memory.h"
#include "session/clone_origin.h"
#include "session/serve_session.h"
#include "snapshot/memory_stats_file.h"
#include "state/state_store.h"
#include "supervise/container_supervisor.h"

namespace fcvm {
namespace {

constexpr auto kStopWait = std::chrono::seconds(60);
// A snapshot copies the guest's memory and disks: minutes at worst, never forever.
constexpr auto kSnapshotWait = std::chrono::minutes(10);

// A running serve's page server, as its record names it; nullopt when it serves file memory.
Result<std::optional<CloneMemory::PageServer>> served_memory(const Config& config, const VmRecord& serve) {
  const auto& extra = serve.extra;
  if (!extra.contains("memory_socket") || !extra["memory_socket"].is_string()) {
    return std::optional<CloneMemory::PageServer>();
  }
  if (!extra.contains("control_socket") || !extra["control_socket"].is_string() ||
      !serve.plugins.count(PluginKind::memory)) {
    return error(Errc::protocol, "serve process " + std::to_string(serve.process.pid) +
                                     " has a malformed record; restart it");
  }
  const auto& name = serve.plugins.at(PluginKind::memory);
  if (auto it = config.plugins.find(PluginKind::memory); it != config.plugins.end() && it->second != name) {
    return error(Errc::invalid_argument, "serve process " + std::to_string(serve.process.pid) +
                                             " serves memory with " + name + ", not " + it->second +
                                             "; drop --memory or pick another serve");
  }
  return std::optional(CloneMemory::PageServer{extra["memory_socket"].get<std::string>(),
                                               extra["control_socket"].get<std::string>(), name});
}

}  // namespace

Status Engine::remove_snapshot(SnapshotStore& store, const StoredSnapshot& snapshot) {
  return fcvm::remove_snapshot(store, loader(), snapshot);
}

Result<SnapshotCreated> Engine::snapshot_create(const VmRef& ref, std::optional<std::string> tag, bool disk_only) {
  auto record = find_running(ref);
  if (!record.ok()) return record.status();
  if (record->type != VmType::vm) {
    return error(Errc::unavailable,
                 record->name + " is a " + to_string(record->type) + "; snapshot the VM it came from");
  }
  control::SnapshotRequest request;
  request.tag = tag ? *tag : record->name;
  FCVM_RETURN_IF_ERROR(SnapshotStore::validate_tag(request.tag));
  request.disk_only = disk_only;
  if (disk_only) {
    // Only the disks are kept: what the guest has not written back yet would be lost.
    auto synced = exec_collect(*record, {"sync"}, [](bool, std::string_view) {});
    if (!synced.ok() || *synced != 0) {
      log_->warn("could not run 'sync' in " + record->name +
                 "; writes still in its page cache are not in the snapshot");
    }
  }
  auto reply = ask_vm(*record, request, kSnapshotWait, "snapshot " + request.tag);
  if (!reply.ok()) return reply.status();
  SnapshotCreated out{request.tag, std::nullopt};
  if (reply->snapshot) out.pause_ms = reply->snapshot->pause_ms;
  return out;
}

Result<std::vector<SnapshotView>> Engine::snapshots() {
  SnapshotStore store(config_->data_dir);
  const auto serves = live_records(VmType::serve);
  std::vector<SnapshotView> out;
  for (auto& s : store.list()) {
    SnapshotView view{std::move(s)};
    view.disk = disk_usage(view.snapshot.dir);
    for (const auto& serve : serves) {
      if (serve.snapshot != view.snapshot.manifest.tag) continue;
      view.serve_pids.push_back(serve.process.pid);
      // Each serve's page-server counters, per clone VMM (empty for file memory).
      view.serves.push_back({{"pid", serve.process.pid},
                             {"memory_clients", serve.vm_dir.empty() ? nlohmann::json::array()
                                                                     : MemoryStatsFile::read_clients(serve.vm_dir)}});
    }
    out.push_back(std::move(view));
  }
  return out;
}

Status Engine::snapshot_remove(const std::string& tag, bool force) {
  FCVM_RETURN_IF_ERROR(require_trusted_data_dir());
  if (!force) {
    for (const auto& s : live_records(VmType::serve)) {
      if (s.snapshot == tag) {
        return error(Errc::unavailable, "snapshot '" + tag + "' is served by process " +
                                            std::to_string(s.process.pid) + "; stop it first or pass --force");
      }
    }
  }
  SnapshotStore store(config_->data_dir);
  auto snapshot = store.get(tag);
  if (!snapshot.ok()) return snapshot.status();
  FCVM_RETURN_IF_ERROR(remove_snapshot(store, *snapshot));
  store.sweep_stale();
  return Status();
}

Status Engine::serve(const ServeRequest& request, const std::function<void(const std::filesystem::path&)>& on_ready) {
  // It may take over, and at exit remove, a dead serve's directory.
  FCVM_RETURN_IF_ERROR(require_trusted_data_dir());
  auto snap = SnapshotStore(config_->data_dir).get(request.tag);
  if (!snap.ok()) return snap.status();
  if (snap->manifest.disk_only) {
    return error(Errc::invalid_argument, "snapshot '" + snap->manifest.tag +
                                             "' has no memory to serve; clone it with 'fcvm snapshot run --snapshot'");
  }
  auto memory = backend(PluginKind::memory);
  if (!memory.ok()) return memory.status();
  auto memory_plugin = chosen_plugin(PluginKind::memory);
  if (!memory_plugin.ok()) return memory_plugin.status();
  block_stop_signals();
  ServeSpec spec{*snap, std::static_pointer_cast<MemoryBackend>(*memory), *memory_plugin, request.name,
                 request.prefetch};
  return serve_snapshot(services(), spec, on_ready);
}

Result<CloneOutcome> Engine::clone(const CloneRequest& request) {
  if (request.serve_pid.has_value() == request.snapshot.has_value()) {
    return error(Errc::invalid_argument, "give --pid SERVE_PID or --snapshot TAG (one of them)");
  }
  if (request.count == 0) return error(Errc::invalid_argument, "--count must be at least 1");
  if (request.count > 1 && !request.detach) {
    return error(Errc::invalid_argument, "--count needs --detach: only one clone can run in the foreground");
  }
  if (request.count > 1 && !request.exec.empty()) {
    return error(Errc::invalid_argument, "--count and --exec do not go together");
  }
  if (request.count == 1) return clone_once(request, request.name);
  CloneOutcome out;
  for (unsigned i = 1; i <= request.count; ++i) {
    std::optional<std::string> name;
    if (request.name) name = *request.name + "-" + std::to_string(i);
    auto one = clone_once(request, name);
    if (!one.ok()) {
      // The clones already started keep running; the error says which they are.
      std::string started;
      for (const auto& n : out.names) started += (started.empty() ? "" : ", ") + n;
      return one.status().with_context(started.empty() ? std::string()
                                                        : "clones " + started + " started, then: ");
    }
    out.names.insert(out.names.end(), one->names.begin(), one->names.end());
  }
  return out;
}

Result<CloneOutcome> Engine::clone_once(const CloneRequest& request, std::optional<std::string> name) {
  std::optional<VmRecord> serve_record;
  std::string tag;
  if (request.serve_pid) {
    auto rec = state_->find_by_pid(*request.serve_pid);
    if (!rec || rec->type != VmType::serve || !rec->alive()) {
      return error(Errc::not_found, "process " + std::to_string(*request.serve_pid) +
                                        " is not a running 'fcvm snapshot serve' (see 'fcvm ls')");
    }
    serve_record = *rec;
    tag = rec->snapshot;
  } else {
    tag = *request.snapshot;
    // A memory backend with a page server clones through a running serve of the snapshot.
    auto memory = backend(PluginKind::memory);
    if (!memory.ok()) return memory.status();
    if (std::static_pointer_cast<MemoryBackend>(*memory)->capabilities().needs_server) {
      auto wanted = chosen_plugin(PluginKind::memory);
      if (!wanted.ok()) return wanted.status();
      for (auto& r : live_records(VmType::serve)) {
        auto it = r.plugins.find(PluginKind::memory);
        if (r.snapshot == tag && it != r.plugins.end() && it->second == *wanted) {
          serve_record = std::move(r);
          break;
        }
      }
      if (!serve_record) {
        return error(Errc::invalid_argument,
                     "no 'fcvm snapshot serve " + tag + " --memory " + *wanted + "' is running; start one (" +
                         *wanted + " clones get their memory from it), or clone with --memory file");
      }
    }
  }
  const std::optional<ProcessIdentity> serve =
      serve_record ? std::optional<ProcessIdentity>(serve_record->process) : std::nullopt;
  CloneSpec spec;
  auto snapshot = SnapshotStore(config_->data_dir).get(tag);
  if (!snapshot.ok()) return snapshot.status();
  spec.snapshot = std::move(snapshot).value();
  if (serve_record) {
    auto served = served_memory(*config_, *serve_record);
    if (!served.ok()) return served.status();
    spec.memory.page_server = *served;
  }
  if (!spec.memory.page_server) {
    auto memory = backend(PluginKind::memory);
    if (!memory.ok()) return memory.status();
    auto plugin = chosen_plugin(PluginKind::memory);
    if (!plugin.ok()) return plugin.status();
    spec.memory.backend = std::static_pointer_cast<MemoryBackend>(*memory);
    spec.memory.plugin = *plugin;
  }
  spec.serve = serve;
  spec.kernel = request.kernel;
  spec.data_dir = config_->data_dir;
  spec.log = log_;

  auto backends = session_backends();
  if (!backends.ok()) return backends.status();
  FCVM_RETURN_IF_ERROR(check_clone_backends(spec.snapshot.manifest, *backends));
  const bool page_served = spec.memory.page_server.has_value();
  auto origin = clone_origin(spec);
  if (!origin.ok()) return origin.status();

  const bool exec = !request.exec.empty();
  VmSessionOptions options;
  options.name = std::move(name);
  options.ports = request.ports;
  const bool detach = exec || request.detach;
  options.keep_exited = !exec;
  options.forward_output = !detach;
  options.log_max_bytes = config_->log_max_bytes;
  // A clone whose pages come from its serve outlives a serve killed with -9, hung at its
  // next fault, so that a restarted serve can adopt it ('fcvm gc' stops it otherwise).
  if (!page_served) options.stop_with = serve;
  VmSession session(services(), std::move(backends).value(), std::move(options));
  FCVM_RETURN_IF_ERROR(session.check());
  block_stop_signals();
  CloneOutcome out;
  if (!detach) {
    auto code = session.run(**origin);
    if (!code.ok()) return code.status();
    out.exit_code = *code;
    return out;
  }
  FCVM_RETURN_IF_ERROR(run_detached(session, **origin).status());
  out.names.push_back(session.name());
  if (!exec) return out;
  auto clone = state_->find_by_name(session.name());
  if (!clone.ok()) return clone.status();
  auto code = exec_collect(*clone, request.exec, [&](bool is_stderr, std::string_view bytes) {
    if (request.exec_output) request.exec_output(is_stderr, bytes);
  });
  stop_process(clone->process, kStopWait);
  if (!code.ok()) return code.status();
  out.exit_code = *code;
  return out;
}

}  // namespace fcvm
