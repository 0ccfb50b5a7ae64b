#include "session/vm_session.h"

#include <algorithm>

#include <sys/syscall.h>
#include <unistd.h>

#include <utility>

#include "health/health_monitor.h"
#include "plugin/plugin_registry.h"
#include "supervise/container_supervisor.h"
#include "supervise/console_tail.h"
#include "session/startup_cache.h"
#include "snapshot/snapshot_builder.h"
#include "state/state_store.h"

namespace fcvm {
namespace {

constexpr auto kAgentConnectTimeout = std::chrono::seconds(10);
constexpr auto kVmStopTimeout = std::chrono::milliseconds(2000);

}  // namespace

// The VM's state record and directory. An ended container keeps both until `fcvm rm` or
// `fcvm gc` (like podman's exited containers) unless the caller asked for removal; a failed
// one is kept too, with status failed and the reason, so its logs can be read.
class VmSession::RecordGuard {
 public:
  RecordGuard(StateStore& state, std::string id, std::filesystem::path vm_dir, bool keep_exited)
      : state_(state), id_(std::move(id)), vm_dir_(std::move(vm_dir)), keep_exited_(keep_exited) {}
  ~RecordGuard() {
    if (keep_exited_) {
      (void)state_.update(id_, [&](VmRecord& r) {
        r.status = exit_code_ ? VmStatus::exited : VmStatus::failed;
        r.exit_code = exit_code_;
        if (!exit_code_) r.error = failure_.empty() ? "fcvm stopped before the VM ended" : failure_;
        r.network.reset();
        r.disk.reset();
        return ok_status();
      });
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(vm_dir_, ec);
    (void)state_.remove(id_);
  }
  RecordGuard(const RecordGuard&) = delete;
  RecordGuard& operator=(const RecordGuard&) = delete;

  const std::string& id() const { return id_; }
  void set_exit_code(int code) { exit_code_ = code; }
  void set_failure(std::string why) { failure_ = std::move(why); }

 private:
  StateStore& state_;
  std::string id_;
  std::filesystem::path vm_dir_;
  bool keep_exited_;
  std::optional<int> exit_code_;
  std::string failure_;
};

VmSession::VmSession(SessionServices services, SessionBackends backends, VmSessionOptions options)
    : services_(std::move(services)), backends_(std::move(backends)), options_(std::move(options)),
      name_(options_.name.value_or(random_vm_name())),
      log_(services_.log->child("vm " + name_)) {}

VmSession::~VmSession() { teardown(); }

nlohmann::json mmds_for_plan(const agent::Plan& plan) { return {{"fcvm", {{"plan", agent::to_json(plan)}}}}; }

std::string VmSession::guest_hostname() const {
  if (options_.hostname) return *options_.hostname;
  std::string host = name_;
  std::replace(host.begin(), host.end(), '_', '-');
  return host;
}

Status VmSession::check() {
  if (checked_) return ok_status();
  if (!options_.ports.empty() && !backends_.network) {
    return error(Errc::invalid_argument,
                 "-p needs a network: pass --network network-bridged (or network-slirp)");
  }
  const std::pair<PluginKind, Backend*> all[] = {{PluginKind::vmm, backends_.vmm.get()},
                                                 {PluginKind::storage, backends_.storage.get()},
                                                 {PluginKind::network, backends_.network.get()}};
  for (const auto& [kind, backend] : all) {
    if (!backend) continue;
    if (auto probe = backend->probe(); !probe.available) {
      auto it = backends_.names.find(kind);
      const std::string who = it != backends_.names.end() ? it->second : to_string(kind);
      return error(Errc::unavailable, who + " cannot run here: " + probe.reason);
    }
  }
  if (!options_.health.url.empty()) {
    // A guest port in --health-url must be published: known before anything boots.
    FCVM_RETURN_IF_ERROR(resolve_health_url(options_.health.url, options_.ports).status());
  }
  if (options_.name) FCVM_RETURN_IF_ERROR(validate_vm_name(*options_.name));
  if (services_.state.find_by_name(name_).ok()) {
    return error(Errc::already_exists, "the name '" + name_ +
                                           "' is in use; pick another, or remove that VM with 'fcvm rm " +
                                           name_ + "' once it has ended");
  }
  checked_ = true;
  return ok_status();
}

Result<int> VmSession::run(VmOrigin& origin) {
  auto code = run_steps(origin);
  if (code && record_) record_->set_exit_code(*code);
  if (!code && record_) record_->set_failure(code.status().message());
  teardown();
  return code;
}

Result<int> VmSession::run_steps(VmOrigin& origin) {
  FCVM_RETURN_IF_ERROR(check());
  auto vmm_name = backends_.names.find(PluginKind::vmm);
  FCVM_RETURN_IF_ERROR(origin.check(backends_.vmm->capabilities(),
                                    vmm_name != backends_.names.end() ? vmm_name->second : "the VMM"));

  VmRecord record;
  record.name = name_;
  record.process = ProcessIdentity::self();
  record.plugins = backends_.names;
  record.status = VmStatus::creating;
  origin.describe(record);
  // The machine's size, for what `fcvm stats` shows against the VM's use.
  if (const GuestMachine m = origin.machine(); m.memory_mib > 0) {
    record.extra["machine"] = {{"vcpus", m.vcpus}, {"memory_mib", m.memory_mib}};
  }
  image_ = record.image;
  auto created = services_.state.create(record);
  if (!created) return created.status();
  vm_dir_ = services_.data_dir / "vms" / created->id;
  record_ = std::make_unique<RecordGuard>(services_.state, created->id, vm_dir_,
                                          options_.keep_exited);
  std::error_code ec;
  std::filesystem::create_directories(vm_dir_, ec);
  if (ec) return error(Errc::io, "create " + vm_dir_.string() + ": " + ec.message());
  FCVM_RETURN_IF_ERROR(update_record([&](VmRecord& r) { r.vm_dir = vm_dir_; }));

  auto disks = origin.create_disks(*backends_.storage, vm_dir_);
  if (!disks) return disks.status();
  disks_ = LeaseGuard<DiskLease>(
      std::move(*disks), [storage = backends_.storage](const DiskLease& l) { return storage->destroy(l); },
      log_, "disk cleanup");
  FCVM_RETURN_IF_ERROR(update_record([&](VmRecord& r) { r.disk = *disks_; }));

  if (backends_.network) {
    auto net = origin.create_network(*backends_.network,
                                     NetworkRequest{record_->id(), name_, options_.ports});
    if (!net) return net.status();
    network_ = LeaseGuard<NetworkLease>(
        std::move(*net), [network = backends_.network](const NetworkLease& l) { return network->teardown(l); },
        log_, "network teardown");
    FCVM_RETURN_IF_ERROR(update_record([&](VmRecord& r) { r.network = *network_; }));
  }

  VmSpec spec = layout();
  // A VMM with MMDS (Firecracker; it serves MMDS through a NIC) gets the plan there too,
  // for guest tools that read it; the agent takes its plan from the channel after HELLO.
  if (backends_.vmm->capabilities().mmds && !spec.nics.empty()) {
    if (auto plan = origin.plan(guest_hostname(), *disks_, network_.get())) spec.mmds = mmds_for_plan(*plan);
  }
  auto vm = origin.start(*backends_.vmm, spec);
  if (!vm) return vm.status();
  vm_ = std::move(*vm);
  if (network_) {
    FCVM_RETURN_IF_ERROR(backends_.network->attach(*network_, vm_->pid()));
    FCVM_RETURN_IF_ERROR(update_record([&](VmRecord& r) { r.network = *network_; }));
  }
  auto vmm_process = ProcessIdentity::of(vm_->pid());
  FCVM_RETURN_IF_ERROR(update_record([&](VmRecord& r) {
    r.status = VmStatus::running;
    if (vmm_process) r.vmm = *vmm_process;
  }));

  auto channel = connect_agent(spec);
  if (!channel) {
    Status why = channel.status();
    if (auto exit = vm_->exited()) {
      why = error(Errc::io, "the VMM exited before the guest agent answered (" + exit->describe() + ")");
    }
    why = origin.agent_unreachable(why);
    return error(why.code(), why.message() + "; console " + spec.console_log.string() + ":" +
                                 console_tail(spec.console_log, 8));
  }
  auto guest_boot_id = origin.verify_guest(*channel);
  if (!guest_boot_id) return guest_boot_id.status();

  const ExecDefaults exec = origin.exec_defaults();
  SupervisorOptions opts;
  opts.control_socket = vm_dir_ / "control.sock";
  opts.output_log = vm_dir_ / "container.log";
  opts.forward_output = options_.forward_output;
  opts.forward_stdin = options_.forward_stdin;
  opts.tty = options_.tty;
  opts.log_max_bytes = options_.log_max_bytes;
  opts.stop_signal = options_.stop_signal;
  opts.main_process = exec.main_process;
  opts.rootfs = exec.rootfs;
  opts.console_log = spec.console_log;
  opts.plan = origin.plan(guest_hostname(), *disks_, network_.get());
  opts.go = origin.go(guest_hostname());
  opts.replay_output = origin.replayed_output();
  opts.guest_sessions = origin.guest_sessions();
  opts.on_started = on_started_;
  opts.on_paused = [this](bool paused) {
    if (Status st = update_record([&](VmRecord& r) { r.paused = paused; }); !st.ok()) {
      log_->warn("cannot record the pause: " + st.message());
    }
  };
  opts.guest_boot_id = *guest_boot_id;

  // `fcvm snapshot create` asks this process, which owns the VM, for a snapshot.
  SnapshotStore snapshots(services_.data_dir);
  SnapshotSource source{name_,
                        record_->id(),
                        image_,
                        backends_.names,
                        PluginRegistry::plugin_version_of(backends_.vmm),
                        origin.machine(),
                        *disks_,
                        network_ ? std::optional<NetworkLease>(*network_) : std::nullopt,
                        exec.main_process,
                        exec.rootfs,
                        {},
                        {}};
  ContainerSupervisor* running = nullptr;
  opts.take_snapshot = [&](const control::SnapshotRequest& request, bool paused,
                           const std::function<bool()>& still_wanted) -> Result<control::SnapshotTaken> {
    source.boot_id = running ? running->guest_boot_id() : std::string();
    auto taken = create_snapshot(*vm_, *backends_.storage, snapshots, source, request, paused,
                                 still_wanted, log_);
    if (!taken) return taken.status();
    return control::SnapshotTaken{taken->tag, taken->pause_ms};
  };
  bool prune_due = false;
  std::function<void(std::function<void()>)> at_first_healthy;
  if (startup_cache_key_ && opts.plan && startup_at_healthy_ && options_.health.enabled()) {
    opts.keep_startup_output = kMaxStartupOutput;
    at_first_healthy = [&](std::function<void()> report) {
      // Between two rounds of the loop: paused, with what the agent had sent before the
      // pause read, the output kept is exactly what the guest's memory no longer holds.
      running->post([&, report = std::move(report)] {
        bool taken = false;
        if (Status st = vm_->pause(); !st.ok()) {
          log_->warn("startup snapshot not taken: pause: " + st.message());
        } else {
          running->drain_agent(std::chrono::milliseconds(50));
          if (const std::vector<OutputChunk>* output = running->startup_output()) {
            SnapshotSource healthy = source;
            healthy.startup_output = encode_startup_output(*output);
            taken = take_startup_snapshot(healthy, running->guest_boot_id(), /*paused=*/true);
          }
          if (Status resumed = vm_->resume(); !resumed.ok()) {
            log_->warn("resume after the startup snapshot: " + resumed.message());
          }
        }
        running->stop_keeping_startup_output();
        report();
        if (taken) prune_startup_cache();
      });
    };
  } else if (startup_cache_key_ && opts.plan) {
    opts.plan->hold = true;
    opts.at_barrier = [&](const std::string& boot_id) { prune_due = take_startup_snapshot(source, boot_id); };
    // Evicting old entries waits until the container runs: it is not on its start path.
    opts.on_started = [this, &prune_due] {
      if (on_started_) on_started_();
      if (std::exchange(prune_due, false)) prune_startup_cache();
    };
  }

  UniqueFd anchor;
  if (options_.stop_with) {
    anchor.reset(static_cast<int>(::syscall(SYS_pidfd_open, options_.stop_with->pid, 0)));
    if (!anchor || !options_.stop_with->alive()) {
      return error(Errc::not_found, "the serve process " + std::to_string(options_.stop_with->pid) +
                                        " is gone; start 'fcvm snapshot serve' again");
    }
    opts.watched.push_back({anchor.get(), [this] {
                              log_->info("the serve process exited; stopping this clone");
                              return true;
                            }});
  }
  std::unique_ptr<HealthMonitor> health;
  if (options_.health.enabled()) {
    auto monitor = start_health_monitor(exec.main_process, std::move(at_first_healthy));
    if (!monitor) return monitor.status();
    health = std::move(*monitor);
    opts.health = health.get();
  }
  ContainerSupervisor supervisor(*vm_, *channel, opts, log_);
  running = &supervisor;
  auto code = supervisor.run();
  if (!code && code.status().code() == Errc::invalid_argument) {
    return code.status().with_context("the container did not start: ");
  }
  return code;
}

bool VmSession::take_startup_snapshot(const SnapshotSource& vm, const std::string& boot_id, bool paused) {
  SnapshotSource source = vm;
  source.cache_key = *startup_cache_key_;
  source.boot_id = boot_id;
  control::SnapshotRequest request;
  request.tag = startup_cache_tag(*startup_cache_key_);
  SnapshotStore snapshots(services_.data_dir);
  auto taken = create_snapshot(*vm_, *backends_.storage, snapshots, source, request, paused, nullptr, log_);
  if (!taken && taken.status().code() == Errc::already_exists) {
    log_->info("startup snapshot " + request.tag + ": a concurrent run took it first");
    return false;
  }
  if (!taken) {
    log_->warn("startup snapshot " + request.tag + " not taken (later runs boot too): " +
               taken.status().message());
    return false;
  }
  log_->info("startup snapshot " + request.tag + " taken; the next runs of this container restore it");
  return true;
}

void VmSession::prune_startup_cache() {
  SnapshotStore snapshots(services_.data_dir);
  const auto storage_name = backends_.names.count(PluginKind::storage) ? backends_.names.at(PluginKind::storage)
                                                                        : std::string();
  prune_startup_snapshots(
      snapshots, startup_cache_tag(*startup_cache_key_), kStartupCacheEntries,
      [&](const StoredSnapshot& old) {
        return remove_startup_snapshot(snapshots, old, *backends_.storage, storage_name);
      },
      log_);
}

Result<std::unique_ptr<HealthMonitor>> VmSession::start_health_monitor(
    const agent::Process& main_process, std::function<void(std::function<void()>)> at_first_healthy) {
  HealthCheckSpec spec = options_.health;
  if (!spec.url.empty()) {
    // The ports the network backend actually published (slirp picks the host address).
    auto url = resolve_health_url(spec.url, network_ ? network_->ports : options_.ports);
    if (!url) return url.status();
    spec.url = *url;
  }
  FCVM_RETURN_IF_ERROR(update_record([](VmRecord& r) { r.health = HealthState{}; }));
  return HealthMonitor::create(
      std::move(spec), main_process,
      [this, at_first_healthy = std::move(at_first_healthy)](const HealthState& state) mutable {
        if (Status st = update_record([&](VmRecord& r) { r.health = state; }); !st.ok()) {
          log_->warn("health: cannot record the state: " + st.message());
        }
        auto report = [this, state] {
          if (on_health_) on_health_(state);
        };
        if (state.status == HealthStatus::healthy && at_first_healthy) {
          std::exchange(at_first_healthy, nullptr)(report);  // reports once it is done
        } else {
          report();
        }
      },
      log_);
}

Status VmSession::update_record(const std::function<void(VmRecord&)>& change) {
  return services_.state
      .update(record_->id(),
              [&](VmRecord& r) {
                change(r);
                return ok_status();
              })
      .status();
}

VmSpec VmSession::layout() const {
  VmSpec spec;
  spec.name = name_;
  spec.dir = vm_dir_;
  spec.drives = disks_->drives;
  spec.agent_socket = vm_dir_ / "agent.sock";
  spec.console_log = vm_dir_ / "console.log";
  if (network_) {
    // A lease without a tap (network-none style backends) means no NIC.
    if (!network_->tap.empty()) spec.nics.push_back(Nic{"eth0", network_->tap, network_->guest.mac});
    spec.namespaces = network_->namespaces;
  }
  return spec;
}

Result<AgentChannel> VmSession::connect_agent(const VmSpec&) {
  auto fd = vm_->connect_agent(std::chrono::steady_clock::now() + kAgentConnectTimeout);
  if (!fd) return fd.status();
  return AgentChannel::adopt(std::move(*fd));
}

void VmSession::teardown() {
  if (vm_) {
    (void)vm_->shutdown(kVmStopTimeout);
    vm_.reset();
  }
  network_.reset();
  disks_.reset();
  record_.reset();
}

}  // namespace fcvm
