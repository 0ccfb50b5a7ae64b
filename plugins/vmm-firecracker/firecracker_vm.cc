#include "firecracker_vm.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>

#include "fcvm/atomic_file.h"
#include "fcvm/file_clone.h"
#include "fcvm/memory.h"
#include "fcvm/unique_fd.h"
#include "firecracker_version.h"
#include "vsock_connector.h"

namespace fcvm::firecracker {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Snapshot files are written whole by Firecracker (guest memory may be GiBs).
constexpr milliseconds kSnapshotTimeout = std::chrono::minutes(10);

long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

// Creates (or empties) a file Firecracker writes into, so it is ours and 0600: Firecracker
// opens logger and metrics files without O_TRUNC or O_APPEND.
Status fresh_file(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return errno_status("create " + path.string());
  return ok_status();
}

Status fsync_file(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0) return errno_status("fsync " + path.string());
  return ok_status();
}

std::filesystem::path temp_name(const std::filesystem::path& path) {
  return path.string() + ".tmp";
}

}  // namespace

FirecrackerVm::FirecrackerVm(StartOptions options, ChildProcess child, LoggerPtr log,
                             off_t console_start)
    : options_(std::move(options)), child_(std::move(child)), log_(std::move(log)),
      exits_("Firecracker",
             {{VmFiles::log(options_.dir), 0}, {options_.console_log, console_start}}),
      api_(VmFiles::api_socket(options_.dir)) {}

FirecrackerVm::~FirecrackerVm() { kill(); }

Result<std::unique_ptr<FirecrackerVm>> FirecrackerVm::start(StartOptions options, LoggerPtr log) {
  if (!log) log = null_logger();
  const auto started = Clock::now();
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return error(Errc::io, "create VM directory " + options.dir.string() + ": " + ec.message());
  // Firecracker binds these itself and fails on a leftover.
  std::filesystem::remove(VmFiles::api_socket(options.dir), ec);
  if (!options.agent_socket.empty()) std::filesystem::remove(options.agent_socket, ec);
  FCVM_RETURN_IF_ERROR(fresh_file(VmFiles::log(options.dir)));
  FCVM_RETURN_IF_ERROR(fresh_file(VmFiles::metrics(options.dir)));
  const auto console = options.console_log.empty() ? options.dir / "console.log" : options.console_log;
  UniqueFd console_fd(::open(console.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!console_fd) return errno_status("open " + console.string());
  const off_t console_start = ::lseek(console_fd.get(), 0, SEEK_END);
  options.console_log = console;

  SpawnOptions spawn;
  spawn.argv = {options.binary, "--api-sock", VmFiles::api_socket(options.dir).string()};
  spawn.cwd = options.dir;  // drives inside the VM dir are given by relative path
  spawn.stdout_fd = console_fd.get();
  spawn.stderr_fd = console_fd.get();
  spawn.namespaces = options.namespaces;
  spawn.die_with_parent = true;
  auto child = ChildProcess::spawn(spawn);
  if (!child) {
    Status st = child.status();
    if (st.code() == Errc::unavailable) {
      return error(Errc::unavailable,
                   st.message() + "; install Firecracker (github.com/firecracker-microvm/"
                                  "firecracker/releases) or set the plugin's \"binary\"");
    }
    return st;
  }
  log->debug("spawned " + options.binary + " pid " + std::to_string(child->pid()));
  std::unique_ptr<FirecrackerVm> vm(
      new FirecrackerVm(std::move(options), std::move(*child), log, console_start));

  const auto deadline = started + vm->options_.api_timeout;
  for (;;) {
    if (auto status = vm->child_.try_wait()) {
      return error(Errc::io, vm->exits_.describe(*status) + " before its API socket answered");
    }
    auto answer = vm->api_.call(FirecrackerRequests::version(), vm->options_.api_timeout);
    if (answer) {
      auto body = nlohmann::json::parse(*answer, nullptr, false);
      const std::string text = body.is_object() ? body.value("firecracker_version", "") : "";
      auto version = FirecrackerVersion::parse(text);
      if (!version) {
        return error(Errc::protocol, "GET /version: unexpected answer '" + answer->substr(0, 200) + "'");
      }
      FCVM_RETURN_IF_ERROR(version->check());
      log->info("Firecracker " + version->to_string() + " pid " + std::to_string(vm->pid()) +
                " ready in " + std::to_string(ms_since(started)) + " ms");
      return vm;
    }
    if (answer.status().code() != Errc::unavailable) return vm->exits_.explain(vm->child_, answer.status());
    if (Clock::now() >= deadline) {
      return error(Errc::timeout, "Firecracker did not open its API socket within " +
                                      std::to_string(vm->options_.api_timeout.count()) + " ms");
    }
    pollfd p{vm->child_.pidfd(), POLLIN, 0};
    ::poll(&p, 1, 5);  // wakes early when Firecracker exits
  }
}

pid_t FirecrackerVm::pid() const { return child_.pid(); }
int FirecrackerVm::exit_fd() const { return child_.pidfd(); }
std::optional<ExitStatus> FirecrackerVm::exited() { return child_.try_wait(); }

Result<std::string> FirecrackerVm::call(const ApiRequest& request, milliseconds timeout) {
  if (Status gone = exits_.check_running(child_); !gone.ok()) {
    return gone.with_context(request.describe() + ": ");
  }
  auto answer = api_.call(request, timeout);
  if (!answer) return exits_.explain(child_, answer.status());
  return answer;
}

Status FirecrackerVm::configure(const std::vector<ApiRequest>& requests, milliseconds timeout) {
  for (const auto& request : requests) {
    auto answer = call(request, timeout);
    if (!answer) return answer.status();
  }
  return ok_status();
}

Result<std::string> FirecrackerVm::instance_state() {
  auto answer = call(FirecrackerRequests::describe_instance(), options_.api_timeout);
  if (!answer) return answer.status();
  auto body = nlohmann::json::parse(*answer, nullptr, false);
  if (!body.is_object() || !body.contains("state") || !body["state"].is_string()) {
    return error(Errc::protocol, "GET /: no state in '" + answer->substr(0, 200) + "'");
  }
  return body["state"].get<std::string>();
}

Status FirecrackerVm::pause() {
  auto answer = call(FirecrackerRequests::pause(), options_.api_timeout);
  return answer ? ok_status() : answer.status().with_context("pause: ");
}

Status FirecrackerVm::resume() {
  auto answer = call(FirecrackerRequests::resume(), options_.api_timeout);
  return answer ? ok_status() : answer.status().with_context("resume: ");
}

Status FirecrackerVm::write_snapshot(const SnapshotFiles& files, SnapshotType type) {
  const auto state_tmp = temp_name(files.state);
  const auto memory_tmp = temp_name(files.memory);
  auto remove_temps = [&] {
    std::error_code ec;
    std::filesystem::remove(state_tmp, ec);
    std::filesystem::remove(memory_tmp, ec);
  };
  remove_temps();  // leftovers of an earlier crash
  Status done = [&]() -> Status {
    if (type == SnapshotType::diff) {
      // The merge target is a private copy of the base: the base and any fork sharing its
      // inode stay untouched, and the guard keeps that true at the one place that writes.
      FCVM_RETURN_IF_ERROR(clone_file(options_.diff_base, memory_tmp, CloneMode::create_new));
      FCVM_RETURN_IF_ERROR(make_private_before_write(memory_tmp));
    }
    auto answer = call(FirecrackerRequests::snapshot_create(state_tmp, memory_tmp, type), kSnapshotTimeout);
    if (!answer) return answer.status();
    FCVM_RETURN_IF_ERROR(fsync_file(state_tmp));
    FCVM_RETURN_IF_ERROR(fsync_file(memory_tmp));
    if (::rename(memory_tmp.c_str(), files.memory.c_str()) != 0) {
      return errno_status("rename " + memory_tmp.string());
    }
    if (::rename(state_tmp.c_str(), files.state.c_str()) != 0) {
      return errno_status("rename " + state_tmp.string());
    }
    return ok_status();
  }();
  if (!done.ok()) {
    remove_temps();
    return done;
  }
  for (const auto& path : {files.state, files.memory}) {
    const auto parent = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
    FCVM_RETURN_IF_ERROR(fsync_dir(parent));
  }
  return ok_status();
}

Status FirecrackerVm::snapshot(const SnapshotFiles& files) {
  const auto started = Clock::now();
  auto state = instance_state();
  if (!state) return state.status().with_context("snapshot: ");
  if (*state != "Paused") {
    return error(Errc::invalid_argument, "snapshot: the VM is '" + *state + "', not paused; pause it first");
  }
  const bool diff = options_.options.snapshot_type == SnapshotType::diff && !options_.diff_base.empty();
  const SnapshotType type = diff ? SnapshotType::diff : SnapshotType::full;
  FCVM_RETURN_IF_ERROR(write_snapshot(files, type).with_context("snapshot: "));
  // Both kinds leave the dirty bitmap relative to what was just written.
  options_.diff_base = files.memory;
  log_->info(std::string(to_api(type)) + " snapshot written in " + std::to_string(ms_since(started)) + " ms");
  return ok_status();
}

Status FirecrackerVm::shutdown(milliseconds timeout) {
  if (!child_.valid() || child_.try_wait()) {
    kill();
    return ok_status();
  }
  auto state = instance_state();
  if (state && *state == "Running") {
    auto sent = call(FirecrackerRequests::send_ctrl_alt_del(), options_.api_timeout);
    if (!sent) log_->warn("SendCtrlAltDel: " + sent.status().message());
    if (sent && child_.wait(timeout)) {
      kill();
      return ok_status();
    }
    log_->warn("guest did not stop within " + std::to_string(timeout.count()) + " ms; killing Firecracker");
  }
  kill();
  return ok_status();
}

void FirecrackerVm::kill() {
  if (child_.valid() && !child_.try_wait()) {
    child_.kill();
    log_->debug("Firecracker killed");
  }
  remove_runtime_files();
}

void FirecrackerVm::remove_runtime_files() {
  std::error_code ec;
  std::filesystem::remove(VmFiles::api_socket(options_.dir), ec);
  if (!options_.agent_socket.empty()) std::filesystem::remove(options_.agent_socket, ec);
}

Result<UniqueFd> FirecrackerVm::connect_agent(std::chrono::steady_clock::time_point deadline) {
  if (options_.agent_socket.empty()) return error(Errc::unavailable, "connect_agent: the VM has no agent socket");
  return VsockConnector::connect(options_.agent_socket, kAgentVsockPort, deadline,
                                 [this] { return exits_.check_running(child_); });
}

}  // namespace fcvm::firecracker
