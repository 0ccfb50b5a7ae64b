#include "run/container_run.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iostream>

#include "agent/agent_channel.h"
#include "config/config.h"
#include "fcvm/network.h"
#include "fcvm/storage.h"
#include "fcvm/vmm.h"
#include "image/image_store.h"
#include "run/container_supervisor.h"
#include "run/guest_assets.h"
#include "state/state_store.h"

namespace fcvm {
namespace {

using cli::CliError;

constexpr auto kHelloTimeout = std::chrono::seconds(60);
constexpr const char* kGuestCmdline = "console=ttyS0 quiet panic=-1";

// What is checked and gathered before anything is created (and before -d detaches).
struct Prepared {
  std::shared_ptr<VmmBackend> vmm;
  std::shared_ptr<StorageBackend> storage;
  std::shared_ptr<NetworkBackend> network;  // null: no NIC
  std::map<PluginKind, std::string> plugin_names;
  GuestAssets assets;
  StoredImage image;
  agent::Process process;
  std::string name;
};

Prepared prepare(cli::CommandContext& ctx, const ContainerRequest& req) {
  Prepared p;
  const auto& data_dir = ctx.config().data_dir;
  p.vmm = ctx.backend_as<VmmBackend>(PluginKind::vmm);
  p.storage = ctx.backend_as<StorageBackend>(PluginKind::storage);
  p.network = ctx.backend_as<NetworkBackend>(PluginKind::network);
  for (auto kind : {PluginKind::vmm, PluginKind::storage, PluginKind::network}) {
    if (auto name = ctx.chosen_plugin(kind); !name.empty()) p.plugin_names[kind] = name;
  }
  if (!req.ports.empty() && !p.network) {
    throw CliError("-p needs a network: pass --network network-bridged (or network-slirp)",
                   kRunFailedExit);
  }
  for (const auto& [kind, backend] :
       std::map<PluginKind, Backend*>{{PluginKind::vmm, p.vmm.get()},
                                      {PluginKind::storage, p.storage.get()},
                                      {PluginKind::network, p.network.get()}}) {
    if (!backend) continue;
    if (auto probe = backend->probe(); !probe.available) {
      throw CliError(p.plugin_names[kind] + " cannot run here: " + probe.reason, kRunFailedExit);
    }
  }
  if (req.name) cli::check(validate_vm_name(*req.name), kRunFailedExit);
  p.name = req.name.value_or(random_vm_name());
  if (ctx.state().find_by_name(p.name).ok()) {
    throw CliError("the name '" + p.name + "' is in use; pick another or remove it ('fcvm gc' clears exited VMs)",
                   kRunFailedExit);
  }
  p.assets = cli::check(find_guest_assets(data_dir, req.kernel, ctx.log()), kRunFailedExit);
  ImageStore images(data_dir, ctx.log()->child("image"));
  p.image = cli::check(images.pull(req.image), kRunFailedExit).image;
  p.process = cli::check(resolve_process(p.image.config, req.process, p.image.rootfs(),
                                         [](const char* k) -> const char* { return std::getenv(k); }),
                         kRunFailedExit);
  return p;
}

// "10.0.2.15/24" → address and prefix length.
std::pair<std::string, int> split_cidr(const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos) return {cidr, 32};
  return {cidr.substr(0, slash), std::stoi(cidr.substr(slash + 1))};
}

std::string console_tail(const std::filesystem::path& console, size_t lines) {
  std::ifstream in(console);
  std::vector<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(line);
    if (tail.size() > lines) tail.erase(tail.begin());
  }
  std::string out;
  for (const auto& l : tail) out += "\n  | " + l;
  return out;
}

agent::Plan make_plan(const std::string& hostname, const DiskLease& disks,
                      const std::optional<NetworkLease>& net, agent::Process process) {
  agent::Plan plan;
  plan.hostname = hostname;
  auto drive_ref = [&](const std::string& id, const std::string& fstype) {
    agent::DriveRef ref;
    ref.drive = id;
    ref.fstype = fstype;
    for (size_t i = 0; i < disks.drives.size(); ++i) {
      if (disks.drives[i].id == id) ref.index = static_cast<std::uint32_t>(i);
    }
    return ref;
  };
  if (disks.root.mode == "overlay") {
    plan.root.mode = agent::RootMode::kOverlay;
    plan.root.lower = drive_ref(disks.root.lower_drive, disks.root.lower_fstype);
    plan.root.upper = drive_ref(disks.root.upper_drive, disks.root.upper_fstype);
  } else {
    plan.root.mode = agent::RootMode::kDirect;
    plan.root.drive = drive_ref(disks.root.lower_drive, disks.root.lower_fstype);
  }
  if (net && !net->tap.empty()) {
    agent::Network n;
    n.mac = net->guest.mac;
    std::tie(n.address, n.prefix_length) = split_cidr(net->guest.address);
    n.gateway = net->guest.gateway;
    n.dns = net->guest.dns;
    n.mtu = net->guest.mtu;
    plan.network = n;
  }
  plan.process = std::move(process);
  return plan;
}

// Everything one run creates, each part torn down in reverse order by teardown() or the
// destructor, on every path.
class ContainerRun {
 public:
  ContainerRun(cli::CommandContext& ctx, const ContainerRequest& req, Prepared prepared)
      : ctx_(ctx), req_(req), p_(std::move(prepared)), log_(ctx.log()->child("vm " + p_.name)) {}
  ~ContainerRun() { teardown(); }

  // Runs the VM to its end. `on_started` is called once the container process runs.
  Result<int> run(const std::function<void()>& on_started) {
    VmRecord record;
    record.name = p_.name;
    record.type = VmType::vm;
    record.process = ProcessIdentity::self();
    record.image = req_.image;
    record.plugins = p_.plugin_names;
    record.status = VmStatus::creating;
    auto created = ctx_.state().create(record);
    if (!created) return created.status();
    record_id_ = created->id;
    vm_dir_ = ctx_.config().data_dir / "vms" / record_id_;
    std::error_code ec;
    std::filesystem::create_directories(vm_dir_, ec);
    if (ec) return error(Errc::io, "create " + vm_dir_.string() + ": " + ec.message());
    FCVM_RETURN_IF_ERROR(update([&](VmRecord& r) { r.vm_dir = vm_dir_; }));

    auto base = p_.storage->prepare_base(p_.image.as_rootfs());
    if (!base) return base.status();
    auto disks = p_.storage->create_disks(*base, vm_dir_, DiskOptions{});
    if (!disks) return disks.status();
    disks_ = *disks;
    FCVM_RETURN_IF_ERROR(update([&](VmRecord& r) { r.disk = disks_; }));

    if (p_.network) {
      NetworkRequest nreq{record_id_, p_.name, req_.ports};
      auto net = p_.network->setup(nreq);
      if (!net) return net.status();
      net_ = *net;
      FCVM_RETURN_IF_ERROR(update([&](VmRecord& r) { r.network = net_; }));
    }

    VmSpec spec;
    spec.name = p_.name;
    spec.dir = vm_dir_;
    spec.vcpus = req_.vcpus;
    spec.memory_mib = req_.memory_mib;
    spec.kernel = p_.assets.kernel;
    spec.initrd = p_.assets.initrd;
    spec.cmdline = kGuestCmdline;
    spec.drives = disks_->drives;
    spec.agent_socket = vm_dir_ / "agent.sock";
    spec.console_log = vm_dir_ / "console.log";
    if (net_) {
      // A lease without a tap (network-none style backends) means no NIC.
      if (!net_->tap.empty()) spec.nics.push_back(Nic{"eth0", net_->tap, net_->guest.mac});
      spec.namespaces = net_->namespaces;
    }
    auto vm = p_.vmm->launch(spec);
    if (!vm) return vm.status();
    vm_ = std::move(*vm);
    if (net_) {
      FCVM_RETURN_IF_ERROR(p_.network->attach(*net_, vm_->pid()));
      FCVM_RETURN_IF_ERROR(update([&](VmRecord& r) { r.network = net_; }));
    }
    FCVM_RETURN_IF_ERROR(update([&](VmRecord& r) { r.status = VmStatus::running; }));

    auto channel = AgentChannel::connect(spec.agent_socket, std::chrono::seconds(10));
    if (!channel) return channel.status();
    FCVM_RETURN_IF_ERROR(wait_for_agent(*channel, spec.console_log));
    FCVM_RETURN_IF_ERROR(channel->send_plan(make_plan(p_.name, *disks_, net_, p_.process)));

    SupervisorOptions opts;
    opts.control_socket = vm_dir_ / "control.sock";
    opts.output_log = vm_dir_ / "container.log";
    opts.forward_output = !req_.detach;
    opts.main_process = p_.process;
    opts.rootfs = p_.image.rootfs();
    opts.on_started = on_started;
    ContainerSupervisor supervisor(*vm_, *channel, opts, log_);
    auto code = supervisor.run();
    if (!code) {
      return code.status().with_context(code.status().code() == Errc::invalid_argument
                                            ? "the container did not start: "
                                            : "") ;
    }
    exit_code_ = *code;
    return *code;
  }

  const std::filesystem::path& vm_dir() const { return vm_dir_; }

 private:
  Status update(const std::function<void(VmRecord&)>& change) {
    auto r = ctx_.state().update(record_id_, [&](VmRecord& rec) {
      change(rec);
      return ok_status();
    });
    return r.status();
  }

  Status wait_for_agent(AgentChannel& channel, const std::filesystem::path& console) {
    const auto deadline = std::chrono::steady_clock::now() + kHelloTimeout;
    sigset_t stops;
    sigemptyset(&stops);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stops, s);
    for (;;) {
      auto hello = channel.wait_hello(std::chrono::milliseconds(200));
      if (hello) {
        log_->debug("agent up: kernel " + hello->kernel + ", " + std::to_string(hello->uptime_ms) + " ms");
        return ok_status();
      }
      if (hello.status().code() != Errc::timeout) return hello.status();
      if (auto st = vm_->exited()) {
        return error(Errc::io, "the VM exited while booting (" + st->describe() + "); console " +
                                   console.string() + ":" + console_tail(console, 8));
      }
      sigset_t pending;
      sigpending(&pending);
      for (int s : {SIGINT, SIGTERM, SIGHUP}) {
        if (sigismember(&pending, s)) return error(Errc::io, "interrupted while the VM was booting");
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return error(Errc::timeout, "the guest agent did not answer within 60 s; console " +
                                        console.string() + ":" + console_tail(console, 8));
      }
    }
  }

  // Stops the VM and removes what the run created. Idempotent.
  void teardown() {
    if (vm_) {
      (void)vm_->shutdown(std::chrono::milliseconds(2000));
      vm_.reset();
    }
    if (net_) {
      if (Status st = p_.network->teardown(*net_); !st.ok()) log_->warn("network teardown: " + st.message());
      net_.reset();
    }
    if (disks_) {
      if (Status st = p_.storage->destroy(*disks_); !st.ok()) log_->warn("disk cleanup: " + st.message());
      disks_.reset();
    }
    if (record_id_.empty()) return;
    const bool keep = exit_code_.has_value() && !req_.remove;
    if (keep) {
      // An exited container keeps its record and logs until `fcvm gc`, like podman's.
      (void)update([&](VmRecord& r) {
        r.status = VmStatus::exited;
        r.exit_code = exit_code_;
        r.network.reset();
        r.disk.reset();
      });
    } else {
      std::error_code ec;
      if (!vm_dir_.empty()) std::filesystem::remove_all(vm_dir_, ec);
      (void)ctx_.state().remove(record_id_);
    }
    record_id_.clear();
  }

  cli::CommandContext& ctx_;
  const ContainerRequest& req_;
  Prepared p_;
  LoggerPtr log_;
  std::string record_id_;
  std::filesystem::path vm_dir_;
  std::optional<DiskLease> disks_;
  std::optional<NetworkLease> net_;
  std::unique_ptr<Vm> vm_;
  std::optional<int> exit_code_;
};

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

// -d: the VM is owned by a child in its own session; the parent waits until the container
// runs (or fails) and reports. The child's own PID is what the state record holds.
int run_detached(cli::CommandContext& ctx, const ContainerRequest& req, Prepared prepared) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw CliError("pipe: " + std::string(strerror(errno)), kRunFailedExit);
  UniqueFd report_read(fds[0]), report_write(fds[1]);
  const std::string name = prepared.name;
  std::cout.flush();
  const pid_t pid = ::fork();
  if (pid < 0) throw CliError("fork: " + std::string(strerror(errno)), kRunFailedExit);
  if (pid == 0) {
    report_read.reset();
    ::setsid();
    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    auto report = [&](const std::string& msg) {
      if (!report_write) return;
      ssize_t ignored = ::write(report_write.get(), msg.data(), msg.size());
      (void)ignored;
      report_write.reset();
    };
    int code = 0;
    {
      ContainerRun run(ctx, req, std::move(prepared));
      auto result = run.run([&] {
        // From here on, the VM's own log file is our stderr.
        int log_fd = ::open((run.vm_dir() / "fcvm.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (log_fd >= 0) ::dup2(log_fd, STDERR_FILENO);
        report("ok");
      });
      if (!result) {
        report(result.status().message());
        code = kRunFailedExit;
      } else {
        code = *result;
      }
    }
    std::_Exit(code);
  }
  report_write.reset();
  std::string message;
  char buf[4096];
  for (ssize_t n; (n = ::read(report_read.get(), buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    message.append(buf, static_cast<size_t>(n));
  }
  if (message == "ok") {
    std::cout << name << "\n";
    return 0;
  }
  throw CliError(message.empty() ? "the detached VM process died while starting" : message, kRunFailedExit);
}

}  // namespace

int run_container(cli::CommandContext& ctx, const ContainerRequest& req) {
  Prepared prepared = prepare(ctx, req);
  block_stop_signals();
  if (req.detach) return run_detached(ctx, req, std::move(prepared));
  ContainerRun run(ctx, req, std::move(prepared));
  auto result = run.run({});
  if (!result) throw CliError(result.status(), kRunFailedExit);
  return *result;
}

}  // namespace fcvm
