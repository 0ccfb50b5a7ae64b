// Engine: opening, and the operations on VMs (find, list, inspect, run, exec, stop, pause,
// remove, gc, logs, health) and images. Snapshots are in engine_snapshots.cc, plugins in
// engine_plugins.cc.
#include "engine/engine.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "engine/host_resources.h"
#include "engine/vm_accounting.h"
#include "engine/vm_target.h"
#include "fcvm/agent_protocol.h"
#include "log/logging.h"
#include "plugin/plugin_registry.h"
#include "snapshot/memory_stats_file.h"
#include "state/state_store.h"
#include "state/trusted_data_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

bool wait_dead(const ProcessIdentity& p, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (p.alive()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// What a user sees as a VM's status: the recorded status while the process runs; for a
// dead process the exit it recorded, or "dead" when it died without recording one.
std::string shown_status(const VmRecord& r, bool alive) {
  // Paused vCPUs show as podman shows a paused container.
  if (alive && r.status == VmStatus::running && r.paused) return "paused";
  // A running VM with a health check shows its health as podman does: "running (healthy)".
  if (alive && r.status == VmStatus::running && r.health) {
    return std::string(to_string(r.status)) + " (" + to_string(r.health->status) + ")";
  }
  if (alive) return to_string(r.status);
  if (r.status == VmStatus::exited) {
    return r.exit_code ? "exited (" + std::to_string(*r.exit_code) + ")" : "exited";
  }
  if (r.status == VmStatus::failed) return r.error.empty() ? "failed" : "failed: " + r.error;
  return "dead";
}

// Memory accounting of a live record: PSS of its VMM (a serve: of itself, whose page cache
// holds the image), and for a clone served by a page server, that server's counters of its
// VMM. (A serve's counters of all its clients are in the snapshot views: listing them here
// too would count every fault twice in a sum over a listing.)
nlohmann::json accounting(const VmRecord& r, bool alive, const std::vector<VmRecord>& all) {
  nlohmann::json j = {{"pss", nullptr}};
  if (!alive) return j;
  if (r.type == VmType::serve) {
    if (auto pss = process_pss(r.process.pid)) j["pss"] = *pss;
    return j;
  }
  if (!r.vmm || !r.vmm->alive()) return j;
  if (auto pss = process_pss(r.vmm->pid)) j["pss"] = *pss;
  if (!r.serve) return j;
  j["memory_server"] = nullptr;
  for (const auto& s : all) {
    if (s.type != VmType::serve || s.process != *r.serve || s.vm_dir.empty()) continue;
    if (auto c = MemoryStatsFile::client(s.vm_dir, r.vmm->pid)) j["memory_server"] = *c;
  }
  return j;
}

// Whether the serve process `serve` was its clones' page server (its record names a
// memory socket).
bool served_pages(const std::vector<VmRecord>& records, const ProcessIdentity& serve) {
  for (const auto& r : records) {
    if (r.type == VmType::serve && r.process == serve) return r.extra.contains("memory_socket");
  }
  return false;
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::open(const ConfigInputs& inputs) {
  for (const auto& dir : inputs.plugin_dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      return error(Errc::invalid_argument, "--plugin-dir " + dir.string() +
                                               ": no such directory; pass a directory that holds fcvm "
                                               "plugins (fcvm-*.so)");
    }
  }
  auto config = Config::load(inputs);
  if (!config.ok()) return config.status();
  std::unique_ptr<Engine> engine(new Engine());
  engine->flag_plugin_dirs_ = inputs.plugin_dirs;
  engine->config_ = std::make_unique<Config>(std::move(config).value());
  // Logging follows the config; the sink is installed once per process.
  init_logging(engine->config_->log_level);
  engine->log_ = root_logger();
  if (!engine->config_->source.empty()) engine->log_->debug("config: read " + engine->config_->source.string());
  engine->state_ = std::make_unique<StateStore>(engine->config_->data_dir, engine->log_);
  return engine;
}

Engine::~Engine() = default;

Status Engine::require_trusted_data_dir() { return check_trusted_data_dir(config_->data_dir); }

BackendLoader Engine::loader() {
  return [this](const std::string& name, PluginKind kind) { return load_backend(name, kind); };
}

SessionServices Engine::services() { return SessionServices{*state_, config_->data_dir, log_}; }

std::vector<VmRecord> Engine::live_records(VmType type) {
  std::vector<VmRecord> out;
  if (auto all = state_->list(); all.ok()) {
    for (auto& r : *all) {
      if (r.type == type && r.alive()) out.push_back(std::move(r));
    }
  }
  return out;
}

Result<VmRecord> Engine::find(const VmRef& ref) {
  if (ref.name_or_id.has_value() == ref.pid.has_value()) {
    return error(Errc::invalid_argument, "name a VM, or give --pid N (not both)");
  }
  auto record = ref.name_or_id ? state_->find(*ref.name_or_id) : state_->find_by_pid(*ref.pid);
  if (!record && record.status().code() == Errc::not_found) {
    return error(Errc::not_found, record.status().message() + " (see 'fcvm ls')");
  }
  return record;
}

Result<VmRecord> Engine::find_running(const VmRef& ref) {
  auto record = find(ref);
  if (!record.ok()) return record;
  if (!record->alive() || record->status != VmStatus::running) {
    return error(Errc::unavailable, record->name + " is not running");
  }
  return record;
}

Result<control::Reply> Engine::ask_vm(const VmRecord& record, const control::Request& request,
                                      std::chrono::milliseconds timeout, const std::string& what) {
  auto client = connect_control(record);
  if (!client.ok()) return client.status();
  FCVM_RETURN_IF_ERROR(client->send_request(request));
  auto reply = client->wait_reply(timeout);
  if (!reply.ok()) return reply.status();
  if (!reply->ok()) return error(Errc::unavailable, what + ": " + *reply->error);
  return reply;
}

Result<std::vector<VmView>> Engine::list(const ListFilter& filter) {
  auto records = state_->list();
  if (!records.ok()) return records.status();
  std::vector<VmView> out;
  for (const auto& r : *records) {
    if (filter.pid && r.process.pid != *filter.pid) continue;
    if (filter.name && r.name != *filter.name) continue;
    const bool alive = r.alive();
    if (!alive && !filter.all) continue;
    out.push_back(VmView{r, alive, shown_status(r, alive), accounting(r, alive, *records)});
  }
  return out;
}

Result<nlohmann::json> Engine::inspect(const VmRef& ref) {
  auto record = find(ref);
  if (!record.ok()) return record.status();
  nlohmann::json out = to_json(*record);
  out["alive"] = record->alive();
  if (!record->vm_dir.empty()) {
    out["files"] = {{"console_log", record->vm_dir / "console.log"},
                    {"container_log", record->vm_dir / "container.log"},
                    {"control_socket", record->vm_dir / "control.sock"}};
  }
  if (!record->image.empty()) {
    if (auto image = ImageStore(config_->data_dir).resolve(record->image)) {
      out["image_digest"] = image->digest;
      out["image_config"] = image->config;
    }
  }
  return out;
}

Result<ContainerOutcome> Engine::run(ContainerRequest request) {
  // Checked before anything is created: chosen plugins exist, the host has room.
  FCVM_RETURN_IF_ERROR(check_plugin_choices());
  FCVM_RETURN_IF_ERROR(check_host_resources(config_->data_dir / "vms", request.memory_mib));
  auto backends = session_backends();
  if (!backends.ok()) return backends.status();
  if (request.log_max_bytes == 0) request.log_max_bytes = config_->log_max_bytes;
  return run_container(request, services(), std::move(backends).value());
}

Result<ExecSession> Engine::exec(const VmRef& ref, const control::ExecRequest& request) {
  auto record = find(ref);
  if (!record.ok()) return record.status();
  if (!record->alive()) return error(Errc::unavailable, record->name + " is not running");
  auto client = connect_control(*record);
  if (!client.ok()) return client.status();
  FCVM_RETURN_IF_ERROR(client->send_request(request));
  return ExecSession(std::move(client).value(), record->name);
}

Status ExecSession::send_stdin(std::string_view bytes) { return client_.queue(control::MessageType::kStdin, bytes); }
Status ExecSession::close_stdin() { return client_.queue(control::MessageType::kStdinEof, {}); }
Status ExecSession::resize(std::uint16_t rows, std::uint16_t cols) {
  return client_.queue(control::MessageType::kResize, control::to_payload(control::TerminalSize{rows, cols}));
}

Result<std::vector<ExecSession::Event>> ExecSession::receive() {
  auto messages = client_.receive();
  if (!messages.ok()) return messages.status();
  std::vector<Event> out;
  for (auto& m : *messages) {
    switch (m.type) {
      case control::MessageType::kStdout: out.push_back({Event::Kind::stdout_data, std::move(m.payload)}); break;
      case control::MessageType::kStderr: out.push_back({Event::Kind::stderr_data, std::move(m.payload)}); break;
      case control::MessageType::kReply: {
        auto reply = control::parse_reply(m.payload);
        if (!reply.ok()) return reply.status();
        if (!reply->ok()) out.push_back({Event::Kind::refused, *reply->error});
        break;
      }
      case control::MessageType::kExit: {
        auto report = control::parse_exit_report(m.payload);
        if (!report.ok()) return report.status();
        out.push_back({Event::Kind::exited, {}, report->code});
        break;
      }
      default: break;
    }
  }
  return out;
}

Result<int> Engine::exec_collect(const VmRecord& vm, const std::vector<std::string>& args,
                                 const std::function<void(bool is_stderr, std::string_view)>& on_output) {
  control::ExecRequest request;
  request.args = args;
  auto session = exec(VmRef::named(vm.id), request);
  if (!session.ok()) return session.status();
  std::string refused;
  while (!session->closed()) {
    auto events = session->receive();
    if (!events.ok()) return events.status();
    for (const auto& e : *events) {
      switch (e.kind) {
        case ExecSession::Event::Kind::stdout_data: on_output(false, e.data); break;
        case ExecSession::Event::Kind::stderr_data: on_output(true, e.data); break;
        case ExecSession::Event::Kind::refused: refused = e.data; break;
        case ExecSession::Event::Kind::exited: return e.exit_code;
      }
    }
  }
  if (!refused.empty()) return error(Errc::unavailable, "exec: " + refused);
  return error(Errc::unavailable, vm.name + " stopped before the command finished");
}

Result<StopOutcome> Engine::stop(const VmRef& ref, std::chrono::seconds grace) {
  if (grace.count() < 0 || grace.count() * 1000 > agent::kMaxShutdownTimeoutMs) {
    return error(Errc::invalid_argument, "--time " + std::to_string(grace.count()) + ": must be between 0 and " +
                                             std::to_string(agent::kMaxShutdownTimeoutMs / 1000) + " seconds");
  }
  auto record = find(ref);
  if (!record.ok()) return record.status();
  StopOutcome out{record->name};
  if (!record->alive()) return out;
  // Signalling proves we may stop it at all; the control socket alone does not tell.
  if (::kill(record->process.pid, 0) != 0 && errno == EPERM) {
    return error(Errc::unavailable, "cannot stop " + record->name + ": its process " +
                                              std::to_string(record->process.pid) +
                                              " belongs to another user; run 'fcvm stop' as that user or as root");
  }
  // Ask on the control socket, which carries the grace to the guest; a process that does
  // not answer there (still booting) gets SIGTERM and its default grace.
  bool asked = false;
  if (auto client = connect_control(*record)) {
    const auto ms = static_cast<std::uint32_t>(std::chrono::milliseconds(grace).count());
    if (Status st = client->send_request(control::StopRequest{ms}); st.ok()) {
      auto reply = client->wait_reply(std::chrono::seconds(5));
      asked = reply.ok() && reply->ok();
      if (reply.ok() && !reply->ok()) out.refusal = *reply->error;
    }
  }
  if (!asked) ::kill(record->process.pid, SIGTERM);
  // The guest gets `grace` (after a bare SIGTERM: the process's default of 10 s), then a
  // few seconds to power off.
  const auto wait = (asked ? grace : std::chrono::seconds(10)) + std::chrono::seconds(5);
  if (!wait_dead(record->process, wait)) {
    ::kill(record->process.pid, SIGKILL);  // its VMM dies with it (parent-death signal)
    if (!wait_dead(record->process, std::chrono::seconds(5))) {
      return error(Errc::io, "could not stop " + record->name + ": its process " +
                                 std::to_string(record->process.pid) + " survived SIGKILL");
    }
    out.killed = true;
  }
  return out;
}

Result<std::string> Engine::pause(const VmRef& ref) { return ask_running(ref, control::PauseRequest{}, "pause"); }
Result<std::string> Engine::unpause(const VmRef& ref) { return ask_running(ref, control::ResumeRequest{}, "unpause"); }

Result<std::string> Engine::ask_running(const VmRef& ref, const control::Request& request, const std::string& verb) {
  auto record = find_running(ref);
  if (!record.ok()) return record.status();
  auto reply = ask_vm(*record, request, std::chrono::seconds(30), verb + " " + record->name);
  if (!reply.ok()) return reply.status();
  return record->name;
}

Result<VmCleanup> Engine::remove(const VmRef& ref, bool force) {
  FCVM_RETURN_IF_ERROR(require_trusted_data_dir());
  auto collecting = state_->lock_collection();
  if (!collecting.ok()) return collecting.status();
  auto record = find(ref);
  if (!record.ok()) return record.status();
  if (record->alive()) {
    if (!force) {
      return error(Errc::unavailable, record->name + " is running; stop it first ('fcvm stop " +
                                                  record->name + "') or use 'fcvm rm --force'");
    }
    if (::kill(record->process.pid, SIGKILL) != 0 && errno == EPERM) {
      return error(Errc::unavailable, "cannot kill " + record->name +
                                                ": its process belongs to another user; run this as that user or root");
    }
    while (record->alive()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return clean_up_vm(config_->data_dir, *state_, loader(), *record);
}

Result<GcReport> Engine::gc(const GcOptions& options) {
  FCVM_RETURN_IF_ERROR(require_trusted_data_dir());
  auto collecting = state_->lock_collection();
  if (!collecting.ok()) return collecting.status();
  GcReport report;
  report.state_dir = state_->dir();
  auto swept = state_->sweep_temp_files();
  if (!swept.ok()) return swept.status();
  report.temp_files_removed = *swept;
  auto records = state_->list();
  if (!records.ok()) return records.status();
  // Clones outlive their serve only if their own watchdog failed, or if the serve was their
  // page server (they wait for a new serve to adopt them) and nobody did: stop them (their
  // records are collected once their process has gone).
  for (const auto& r : *records) {
    if (r.type == VmType::clone && r.serve && !r.serve->alive() && r.alive()) {
      log_->info("gc: stopping " + r.name + ", whose serve process is gone");
      // A VMM whose page server is gone hangs at its next fault and ignores SIGTERM.
      if (r.vmm && r.vmm->alive() && served_pages(*records, *r.serve)) ::kill(r.vmm->pid, SIGKILL);
      ::kill(r.process.pid, SIGTERM);
    }
  }
  SnapshotStore snapshots(config_->data_dir);
  snapshots.sweep_stale();
  if (options.cache) {
    // Runs restored from one keep its memory file open and have their own disks.
    for (const auto& s : snapshots.list()) {
      if (!s.manifest.is_cache()) continue;
      if (Status st = remove_snapshot(snapshots, s); !st.ok()) {
        report.kept.push_back({{"snapshot", s.manifest.tag}, {"reason", st.message()}});
        log_->warn("gc: keeping snapshot " + s.manifest.tag + ": " + st.message());
      } else {
        report.removed.push_back({{"snapshot", s.manifest.tag}});
      }
    }
  }
  for (const auto& r : *records) {
    if (r.alive()) continue;
    VmCleanup outcome = clean_up_vm(config_->data_dir, *state_, loader(), r);
    if (outcome.removed) {
      report.removed.push_back({{"id", r.id}, {"name", r.name}, {"cleaned", outcome.cleaned}});
    } else {
      report.kept.push_back({{"id", r.id}, {"name", r.name}, {"reason", outcome.problem}});
      log_->warn("gc: keeping " + r.name + " (" + r.id + "): " + outcome.problem);
    }
  }
  return report;
}

Status Engine::logs(const VmRef& ref, const LogOptions& options, const std::function<bool(std::string_view)>& sink) {
  auto record = find(ref);
  if (!record.ok()) return record.status();
  const auto file = record->vm_dir / (options.console ? "console.log" : "container.log");
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    const int why = errno;
    if (why == EACCES || why == EPERM) {
      return error(Errc::unavailable,
                   "cannot read " + file.string() + ": " + std::strerror(why) +
                       "; the VM belongs to another user: run 'fcvm logs' as that user or as root");
    }
    if (!record->alive()) return error(Errc::not_found, "no logs for " + record->name + " at " + file.string());
  }
  char buf[65536];
  // A rotated container log (see log_max_bytes) comes first.
  if (!options.console) {
    std::ifstream rotated(file.string() + ".1", std::ios::binary);
    while (rotated.read(buf, sizeof buf) || rotated.gcount() > 0) {
      if (!sink(std::string_view(buf, static_cast<size_t>(rotated.gcount())))) return Status();
    }
  }
  for (;;) {
    for (;;) {
      in.read(buf, sizeof buf);
      if (in.gcount() <= 0) break;
      if (!sink(std::string_view(buf, static_cast<size_t>(in.gcount())))) return Status();
    }
    if (!options.follow || !record->alive()) return Status();
    in.clear();
    if (!in.is_open()) in.open(file, std::ios::binary);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Result<std::optional<std::string>> Engine::health_check(const VmRef& ref) {
  auto record = find(ref);
  if (!record.ok()) return record.status();
  if (!record->health) {
    return error(Errc::unavailable,
                 record->name + " has no health check; give it one with podman run --health-cmd or --health-url");
  }
  if (!record->alive()) {
    return error(Errc::unavailable, record->name + " is not running; start it again to check its health");
  }
  auto client = connect_control(*record);
  if (!client.ok()) return client.status();
  FCVM_RETURN_IF_ERROR(client->send_request(control::HealthcheckRequest{}));
  // The VM's process bounds the check by its --health-timeout; this only outlasts it.
  auto reply = client->wait_reply(std::chrono::hours(1));
  if (!reply.ok()) return reply.status();
  if (!reply->ok()) return std::optional<std::string>(*reply->error);
  return std::optional<std::string>();
}

Result<std::vector<VmStats>> Engine::stats(const std::vector<VmRef>& refs, std::chrono::milliseconds sample) {
  std::vector<VmRecord> targets;
  if (refs.empty()) {
    for (auto& r : live_records(VmType::vm)) targets.push_back(std::move(r));
    for (auto& r : live_records(VmType::clone)) targets.push_back(std::move(r));
  } else {
    for (const auto& ref : refs) {
      auto record = find_running(ref);
      if (!record.ok()) return record.status();
      targets.push_back(std::move(record).value());
    }
  }
  std::vector<std::optional<VmmSample>> before;
  for (const auto& r : targets) before.push_back(r.vmm ? sample_vmm(r.vmm->pid) : std::nullopt);
  std::this_thread::sleep_for(sample);
  std::vector<VmStats> out;
  for (size_t i = 0; i < targets.size(); ++i) {
    auto measured = before[i] ? measure_vm(targets[i], *before[i])
                              : Result<VmStats>(error(Errc::not_found, targets[i].name + " has no running VMM yet"));
    if (measured.ok()) {
      // The guest's process count, from the agent's process table (header line excluded).
      if (auto table = top(VmRef::named(targets[i].id)); table.ok()) {
        measured->pids = static_cast<unsigned>(std::count(table->begin(), table->end(), '\n')) - 1;
      }
      out.push_back(std::move(measured).value());
    } else if (!refs.empty()) {
      return measured.status();
    }
  }
  return out;
}

Result<std::string> Engine::top(const VmRef& ref) {
  auto record = find_running(ref);
  if (!record.ok()) return record.status();
  std::string out, err;
  // /proc/1/exe is fc-agent (the guest's PID 1) whatever the image holds.
  auto code = exec_collect(*record, {"/proc/1/exe", "ps"}, [&](bool is_stderr, std::string_view bytes) {
    (is_stderr ? err : out) += bytes;
  });
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return error(Errc::unavailable, "top " + record->name + ": the guest agent's process list failed (exit " +
                                        std::to_string(*code) + "): " + escape_control_chars(err));
  }
  // The guest's text reaches the user's terminal.
  return escape_control_chars(out);
}

Result<VmEventWatcher> Engine::watch_events() { return VmEventWatcher::open(config_->data_dir); }

Result<std::vector<StoredImage>> Engine::images() { return ImageStore(config_->data_dir, log_).list(); }

Status Engine::remove_image(const std::string& ref) {
  FCVM_RETURN_IF_ERROR(require_trusted_data_dir());
  return ImageStore(config_->data_dir, log_).remove(ref);
}

}  // namespace fcvm
