#include "slirp_network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "fcvm/path_beneath.h"
#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm/host_port.h"
#include "fcvm/netns.h"
#include "fcvm/program_path.h"
#include "fcvm/route_netlink.h"
#include "fcvm/tap_device.h"

namespace fcvm::slirp {
namespace {

// VM ids name this plugin's files (<id>.sock, <id>.log): never a path.
Status check_vm_id(const std::string& id) {
  if (id.empty() || id.size() > 32 || id.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyz") != std::string::npos) {
    return error(Errc::invalid_argument, "network-slirp: vm id '" + id + "' is not [a-z0-9]");
  }
  return ok_status();
}

constexpr const char* kBridge = "br0";
constexpr const char* kSlirpTap = "slirp0";
constexpr const char* kGuestAddress = "10.0.2.15/24";
constexpr const char* kGuestIp = "10.0.2.15";
constexpr const char* kGateway = "10.0.2.2";
constexpr const char* kDns = "10.0.2.3";

std::string format_ipv4(std::uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

std::optional<std::uint64_t> start_time_of(pid_t pid) {
  auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return std::nullopt;
  auto close = stat->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(stat->substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && (rest >> field); ++i) {
    if (i == 22) return std::stoull(field);
  }
  return std::nullopt;
}

Result<ProcessRef> ref_of(pid_t pid) {
  auto start = start_time_of(pid);
  if (!start) return error(Errc::not_found, "process " + std::to_string(pid) + " is gone");
  return ProcessRef{pid, *start};
}

// Kills the process if it is still the one recorded, waits until it has gone, and reaps it
// when it is our child. Idempotent.
Status stop_process(const ProcessRef& ref, const std::string& what) {
  if (ref.pid <= 0) return ok_status();
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, ref.pid, 0)));
  if (!pidfd) {
    if (errno == ESRCH) return ok_status();
    return errno_status("pidfd_open " + what);
  }
  // The pidfd pins the PID: from here it cannot be recycled under us.
  if (start_time_of(ref.pid) != ref.start_time) return ok_status();
  if (::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0) != 0 && errno != ESRCH) {
    return errno_status("kill " + what + " (pid " + std::to_string(ref.pid) + ")");
  }
  pollfd p{pidfd.get(), POLLIN, 0};
  while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
  ::waitpid(ref.pid, nullptr, WNOHANG);
  return ok_status();
}

// ---- the namespace holder (a forked child; never returns) ----

void reply(int fd, const std::string& text) {
  ssize_t ignored = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  (void)ignored;
}

Status write_proc_self(const std::string& file, const std::string& text) {
  UniqueFd fd(::open(("/proc/self/" + file).c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return errno_status("write /proc/self/" + file);
  }
  return ok_status();
}

Status holder_build(unsigned mtu) {
  const uid_t uid = ::geteuid();
  const gid_t gid = ::getegid();
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
    return errno_status("unshare a user + network namespace");
  }
  FCVM_RETURN_IF_ERROR(write_proc_self("setgroups", "deny"));
  FCVM_RETURN_IF_ERROR(write_proc_self("uid_map", "0 " + std::to_string(uid) + " 1\n"));
  FCVM_RETURN_IF_ERROR(write_proc_self("gid_map", "0 " + std::to_string(gid) + " 1\n"));
  auto rt = RouteNetlink::open();
  if (!rt) return rt.status();
  FCVM_RETURN_IF_ERROR(rt->link_up("lo"));
  FCVM_RETURN_IF_ERROR(rt->add_bridge(kBridge));
  auto here = Netns::current();
  if (!here) return here.status();
  auto tap = TapDevice::create(*here, "tap0", mtu);
  if (!tap) return tap.status();
  tap->release();  // lives as long as the namespace
  FCVM_RETURN_IF_ERROR(rt->set_master("tap0", kBridge));
  return rt->link_up(kBridge, mtu);
}

[[noreturn]] void holder_main(int ctl, unsigned mtu) {
  Status built = holder_build(mtu);
  reply(ctl, built.ok() ? "ready" : "error: " + built.message());
  if (!built.ok()) ::_exit(1);
  char buf[256];
  for (;;) {
    const ssize_t n = ::recv(ctl, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // setup is done with us: hold the namespaces until killed
    const std::string cmd(buf, static_cast<size_t>(n));
    if (cmd == "attach-slirp") {
      auto rt = RouteNetlink::open();
      Status st = rt.ok() ? rt->set_master(kSlirpTap, kBridge) : rt.status();
      if (st.ok()) st = rt->link_up(kSlirpTap, mtu);
      reply(ctl, st.ok() ? "ok" : "error: " + st.message());
    }
  }
  ::close(ctl);
  for (;;) ::pause();
}

struct Holder {
  ProcessRef ref;
  UniqueFd ctl;
};

Result<std::string> ask(int ctl, const std::string& command) {
  if (!command.empty() && ::send(ctl, command.data(), command.size(), MSG_NOSIGNAL) < 0) {
    return errno_status("talk to the namespace holder");
  }
  char buf[1024];
  ssize_t n;
  while ((n = ::recv(ctl, buf, sizeof buf, 0)) < 0 && errno == EINTR) {
  }
  if (n <= 0) return error(Errc::io, "the namespace holder died");
  std::string answer(buf, static_cast<size_t>(n));
  if (answer.rfind("error: ", 0) == 0) return error(Errc::unavailable, answer.substr(7));
  return answer;
}

Result<Holder> spawn_holder(unsigned mtu) {
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) return errno_status("socketpair");
  UniqueFd parent_end(sp[0]), child_end(sp[1]);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return errno_status("fork the namespace holder");
  if (pid == 0) {
    // Dies with the fcvm process that owns the VM; holds none of its other fds.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    ::setsid();
    if (::dup2(child_end.get(), 3) < 0) ::_exit(1);
    ::syscall(SYS_close_range, 4u, ~0u, 0u);
    int null_fd = ::open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; ++fd) ::dup2(null_fd, fd);
    ::prctl(PR_SET_NAME, "fcvm-nsholder");
    holder_main(3, mtu);
  }
  child_end.reset();
  Holder h;
  h.ref.pid = pid;
  auto answer = ask(parent_end.get(), "");
  auto started = start_time_of(pid);
  if (!answer || !started) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return answer ? error(Errc::io, "the namespace holder died") : answer.status();
  }
  h.ref.start_time = *started;
  h.ctl = std::move(parent_end);
  return h;
}

// One request on slirp4netns's API socket; returns the "return" object.
Result<nlohmann::json> api_call(const std::string& socket_path, const nlohmann::json& request) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof sa.sun_path) return error(Errc::invalid_argument, "API socket path too long");
  std::strncpy(sa.sun_path, socket_path.c_str(), sizeof sa.sun_path - 1);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    return errno_status("connect to slirp4netns at " + socket_path);
  }
  const std::string text = request.dump();
  if (::write(s.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return errno_status("write to slirp4netns");
  }
  ::shutdown(s.get(), SHUT_WR);
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::read(s.get(), buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("read from slirp4netns");
    answer.append(buf, static_cast<size_t>(n));
  }
  auto doc = nlohmann::json::parse(answer, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return error(Errc::protocol, "slirp4netns answered: " + answer);
  if (doc.contains("error")) {
    return error(Errc::unavailable, doc["error"].value("desc", doc["error"].dump()));
  }
  return doc.value("return", nlohmann::json::object());
}

std::optional<std::string> find_in_path(const std::string& program) {
  auto found = find_program(program);
  return found.empty() ? std::nullopt : std::optional(found.string());
}

Status keep_first(Status first, Status next) { return first.ok() ? next : first; }

}  // namespace

Result<Options> Options::from_json(const nlohmann::json& config) {
  Options o;
  try {
    if (config.contains("slirp4netns")) o.slirp4netns = config["slirp4netns"].get<std::string>();
    if (config.contains("mtu")) o.mtu = config["mtu"].get<unsigned>();
    if (config.contains("host_loopback")) o.host_loopback = config["host_loopback"].get<bool>();
  } catch (const nlohmann::json::exception& e) {
    return error(Errc::invalid_argument, std::string("plugin_config.network-slirp: ") + e.what());
  }
  if (o.mtu < 576 || o.mtu > 65520) {
    return error(Errc::invalid_argument, "plugin_config.network-slirp.mtu: expected 576-65520");
  }
  return o;
}

SlirpNetwork::SlirpNetwork(std::filesystem::path data_dir, Options options, LoggerPtr log)
    : data_dir_(std::move(data_dir)),
      options_(std::move(options)),
      log_(std::move(log)),
      allocations_(data_dir_ / "loopback.json") {}

Status SlirpNetwork::check_user_namespaces() {
  auto max = read_sysctl("user.max_user_namespaces");
  if (max && *max == "0") {
    return error(Errc::unavailable, "user namespaces are disabled (user.max_user_namespaces=0); "
                                    "enable them with 'sysctl -w user.max_user_namespaces=15000'");
  }
  auto debian = read_sysctl("kernel.unprivileged_userns_clone");
  if (debian && *debian == "0" && ::geteuid() != 0) {
    return error(Errc::unavailable, "unprivileged user namespaces are disabled; enable them with "
                                    "'sysctl -w kernel.unprivileged_userns_clone=1'");
  }
  // The definitive test: try it in a throwaway child.
  const pid_t pid = ::fork();
  if (pid < 0) return errno_status("fork");
  if (pid == 0) ::_exit(::unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 ? 0 : errno);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ok_status();
  const int err = WIFEXITED(status) ? WEXITSTATUS(status) : EPERM;
  return error(Errc::unavailable, std::string("cannot create a user namespace (") + std::strerror(err) +
                                      "); check user.max_user_namespaces, kernel.unprivileged_userns_clone "
                                      "and any AppArmor/SELinux policy restricting unprivileged user namespaces");
}

Probe SlirpNetwork::probe() {
  if (!find_in_path(options_.slirp4netns)) {
    return Probe::no(options_.slirp4netns + ": not found in PATH; install the slirp4netns package");
  }
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
    return Probe::no("/dev/net/tun is missing or not usable; load the tun module (modprobe tun)");
  }
  if (Status st = check_user_namespaces(); !st.ok()) return Probe::no(st.message());
  return Probe::yes("rootless: user + network namespace per VM, slirp4netns, ports on 127.100.x.y");
}

Result<NetworkLease> SlirpNetwork::setup(const NetworkRequest& request) {
  GuestNetwork guest;
  guest.mac = random_guest_mac();
  guest.address = kGuestAddress;
  guest.gateway = kGateway;
  guest.dns = {kDns};
  guest.mtu = options_.mtu;
  return create(request, guest, "tap0");
}

Result<NetworkLease> SlirpNetwork::setup_clone(const NetworkLease& snapshot_lease, const NetworkRequest& request) {
  if (snapshot_lease.tap != "tap0" || snapshot_lease.guest.address != kGuestAddress) {
    return error(Errc::invalid_argument, "network-slirp: the snapshot's guest is not on slirp's 10.0.2.15/24 with tap0");
  }
  return create(request, snapshot_lease.guest, snapshot_lease.tap);
}

Result<NetworkLease> SlirpNetwork::create(const NetworkRequest& request, GuestNetwork guest, const std::string& tap) {
  FCVM_RETURN_IF_ERROR(check_vm_id(request.vm_id));
  const auto program = find_in_path(options_.slirp4netns);
  if (!program) {
    return error(Errc::unavailable, options_.slirp4netns + ": not found in PATH; install the slirp4netns package");
  }
  for (const auto& p : request.ports) FCVM_RETURN_IF_ERROR(validate_port_mapping(p));

  SlirpState st;
  st.vm_id = request.vm_id;
  NetworkLease lease;
  lease.plugin = kPluginName;
  lease.tap = tap;
  lease.guest = guest;
  FCVM_RETURN_IF_ERROR(allocations_.update([&](nlohmann::json& doc) -> Status {
    auto slot = AllocationFile::lowest_free_slot(doc, options_.loopback_capacity);
    if (!slot) {
      return error(Errc::unavailable, "network-slirp: all loopback addresses are taken; run 'fcvm gc'");
    }
    st.loopback = format_ipv4(options_.loopback_base + 1 + *slot);
    doc["holders"][request.vm_id] = {{"slot", *slot}, {"name", request.name}};
    return ok_status();
  }));
  for (auto p : request.ports) {
    if (p.host_ip == "0.0.0.0") p.host_ip = st.loopback;  // the VM's own address
    lease.ports.push_back(p);
  }
  lease.extra = st;

  auto built = [&]() -> Status {
    for (const auto& p : lease.ports) FCVM_RETURN_IF_ERROR(check_host_port_free(p));
    auto holder = spawn_holder(options_.mtu);
    if (!holder) return holder.status();
    st.holder = holder->ref;
    lease.extra = st;
    const std::string ns_dir = "/proc/" + std::to_string(st.holder.pid) + "/ns/";
    lease.namespaces = {ns_dir + "user", ns_dir + "net"};

    st.api_socket = (data_dir_ / (request.vm_id + ".sock")).string();
    const auto slirp_log = data_dir_ / (request.vm_id + ".log");
    ::unlink(st.api_socket.c_str());
    UniqueFd log_fd(::open(slirp_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!log_fd) return errno_status("create " + slirp_log.string());
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) return errno_status("pipe");
    UniqueFd ready_read(ready[0]), ready_write(ready[1]);
    SpawnOptions opts;
    opts.argv = {*program, "--mtu=" + std::to_string(options_.mtu), "--api-socket", st.api_socket, "--ready-fd=1"};
    if (!options_.host_loopback) opts.argv.push_back("--disable-host-loopback");
    opts.argv.push_back(std::to_string(st.holder.pid));
    opts.argv.push_back(kSlirpTap);
    opts.stdout_fd = ready_write.get();
    opts.stderr_fd = log_fd.get();
    opts.new_session = true;  // terminal signals must not reach it; teardown stops it
    auto slirp = ChildProcess::spawn(opts);
    if (!slirp) return slirp.status();
    auto ref = ref_of(slirp->pid());
    if (ref) st.slirp = *ref;
    slirp->detach();  // owned by the lease from here
    lease.extra = st;
    ready_write.reset();
    char byte = 0;
    ssize_t n;
    while ((n = ::read(ready_read.get(), &byte, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1 || !ref) {
      auto text = read_file(slirp_log);
      std::string why = text.ok() ? *text : "";
      while (!why.empty() && why.back() == '\n') why.pop_back();
      if (auto nl = why.rfind('\n'); nl != std::string::npos) why = why.substr(nl + 1);
      return error(Errc::unavailable, "slirp4netns did not start" + (why.empty() ? "" : ": " + why));
    }
    auto attached = ask(holder->ctl.get(), "attach-slirp");
    if (!attached) return attached.status();
    for (const auto& p : lease.ports) {
      auto fwd = api_call(st.api_socket, {{"execute", "add_hostfwd"},
                                          {"arguments",
                                           {{"proto", p.proto},
                                            {"host_addr", p.host_ip},
                                            {"host_port", p.host_port},
                                            {"guest_addr", kGuestIp},
                                            {"guest_port", p.guest_port}}}});
      if (!fwd) return fwd.status().with_context("publish " + describe(p) + ": ");
    }
    return ok_status();
  }();
  if (!built.ok()) {
    if (Status undone = teardown(lease); !undone.ok()) log_->warn("cleanup after failed setup: " + undone.message());
    return built.with_context("network-slirp: ");
  }
  log_->debug("VM " + request.name + ": holder " + std::to_string(st.holder.pid) + ", slirp4netns " +
              std::to_string(st.slirp.pid) + ", ports on " + st.loopback);
  return lease;
}

Status SlirpNetwork::attach(NetworkLease&, pid_t) { return ok_status(); }

Status SlirpNetwork::teardown(const NetworkLease& lease) {
  SlirpState st;
  try {
    st = lease.extra.get<SlirpState>();
  } catch (const nlohmann::json::exception& e) {
    return error(Errc::invalid_argument, std::string("network-slirp: unreadable lease: ") + e.what());
  }
  Status result = stop_process(st.slirp, "slirp4netns");
  result = keep_first(result, stop_process(st.holder, "the namespace holder"));
  // The lease comes from a record: its id names files in our dir only if it is an id.
  if (!st.vm_id.empty() && check_vm_id(st.vm_id).ok()) {
    (void)remove_beneath(data_dir_, st.vm_id + ".sock");
    (void)remove_beneath(data_dir_, st.vm_id + ".log");
  }
  if (!result.ok()) return result.with_context("network-slirp teardown: ");
  return allocations_.update([&](nlohmann::json& doc) {
    doc["holders"].erase(st.vm_id);
    return ok_status();
  });
}

}  // namespace fcvm::slirp
