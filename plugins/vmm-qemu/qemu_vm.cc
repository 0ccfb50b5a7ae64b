#include "qemu_vm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "fcvm/atomic_file.h"
#include "fcvm/file_clone.h"
#include "fcvm/unique_fd.h"
#include "fcvm/unix_socket.h"
#include "qemu_command_line.h"

namespace fcvm::qemu {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kSnapshotFd = "fcvm-snapshot";
constexpr const char* kIncomingFd = "fcvm-incoming";

long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

milliseconds left_until(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return std::max(left, milliseconds(0));
}

}  // namespace

QemuVm::QemuVm(StartOptions options, ChildProcess child, LoggerPtr log, off_t log_start)
    : options_(std::move(options)), child_(std::move(child)), log_(std::move(log)),
      exits_("QEMU", {{QemuCommandLine::log_file(options_.dir), log_start}}) {}

QemuVm::~QemuVm() { kill(); }

Result<std::unique_ptr<QemuVm>> QemuVm::start(StartOptions options, LoggerPtr log) {
  if (!log) log = null_logger();
  const auto started = Clock::now();
  const auto log_path = QemuCommandLine::log_file(options.dir);
  UniqueFd log_fd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log_fd) return errno_status("open " + log_path.string());
  const off_t log_start = ::lseek(log_fd.get(), 0, SEEK_END);
  const auto qmp_path = QemuCommandLine::qmp_socket(options.dir);
  std::error_code ec;
  std::filesystem::remove(qmp_path, ec);  // a stale socket would look like a live one
  // A boot gets fresh RAM: QEMU would reuse a leftover file, contents and all.
  if (options.owns_memory_file && !options.memory_file_ready) {
    std::filesystem::remove(QemuCommandLine::memory_file(options.dir), ec);
  }

  SpawnOptions spawn;
  spawn.argv = options.argv;
  spawn.stdout_fd = log_fd.get();
  spawn.stderr_fd = log_fd.get();
  spawn.namespaces = options.namespaces;
  spawn.die_with_parent = true;
  spawn.env_add = options.env_add;
  auto child = ChildProcess::spawn(spawn);
  if (!child) {
    Status st = child.status();
    if (st.code() == Errc::unavailable) {
      return error(Errc::unavailable, st.message() + "; fix: apt-get install qemu-system-x86");
    }
    return st;
  }
  log->debug("spawned " + options.argv.front() + " pid " + std::to_string(child->pid()));
  // From here on the handle owns the process: any early return kills it and cleans up.
  std::unique_ptr<QemuVm> vm(new QemuVm(std::move(options), std::move(*child), log, log_start));
  if (vm->options_.on_spawned) FCVM_RETURN_IF_ERROR(vm->options_.on_spawned(vm->pid()));

  const auto deadline = started + vm->options_.qmp_timeout;
  for (;;) {
    if (auto status = vm->child_.try_wait()) {
      return error(Errc::io, vm->exits_.describe(*status) + " before its QMP socket answered");
    }
    auto client = QmpClient::connect(qmp_path, std::max(left_until(deadline), milliseconds(1)));
    if (client) {
      vm->qmp_ = std::move(*client);
      break;
    }
    if (client.status().code() != Errc::unavailable) return vm->exits_.explain(vm->child_, client.status());
    if (Clock::now() >= deadline) {
      return error(Errc::timeout, "QEMU did not open its QMP socket within " +
                                      std::to_string(vm->options_.qmp_timeout.count()) +
                                      " ms; see " + log_path.string());
    }
    pollfd p{vm->child_.pidfd(), POLLIN, 0};
    ::poll(&p, 1, 5);  // wakes early when QEMU exits
  }
  log->info("QEMU pid " + std::to_string(vm->pid()) + " ready (QMP) in " +
            std::to_string(ms_since(started)) + " ms");
  return vm;
}

pid_t QemuVm::pid() const { return child_.pid(); }
int QemuVm::exit_fd() const { return child_.pidfd(); }
std::optional<ExitStatus> QemuVm::exited() { return child_.try_wait(); }

Result<nlohmann::json> QemuVm::qmp(std::string_view command, const nlohmann::json& arguments,
                                   milliseconds timeout, int fd) {
  FCVM_RETURN_IF_ERROR(exits_.check_running(child_));
  auto reply = qmp_.execute(command, arguments, timeout, fd);
  if (!reply) return exits_.explain(child_, reply.status());
  return reply;
}

Result<std::string> QemuVm::run_state() {
  auto reply = qmp("query-status");
  if (!reply) return reply.status();
  return reply->value("status", std::string("unknown"));
}

Status QemuVm::pause() {
  auto reply = qmp("stop");
  return reply ? ok_status() : reply.status().with_context("pause: ");
}

Status QemuVm::resume() {
  auto reply = qmp("cont");
  return reply ? ok_status() : reply.status().with_context("resume: ");
}

Status QemuVm::wait_for_migration(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto nap = std::chrono::microseconds(500);
  for (;;) {
    auto info = qmp("query-migrate");
    if (!info) return info.status();
    const std::string status = info->value("status", std::string());
    if (status == "completed") return ok_status();
    if (status == "failed" || status == "cancelled") {
      return error(Errc::io, "migration " + status + ": " +
                                 info->value("error-desc", std::string("no reason given")));
    }
    if (Clock::now() >= deadline) {
      return error(Errc::timeout, "migration still '" + status + "' after " +
                                      std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(20000));
  }
}

Status QemuVm::write_state(const std::filesystem::path& state) {
  const std::filesystem::path tmp = state.string() + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return errno_status("create " + tmp.string());
  auto fail = [&tmp](Status failure) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    return failure;
  };
  const std::string header = options_.machine.encode();
  if (::write(fd.get(), header.data(), header.size()) != static_cast<ssize_t>(header.size())) {
    return fail(errno_status("write " + tmp.string()));
  }
  // QEMU writes the stream straight into the file through a passed descriptor, so the
  // file is complete when query-migrate says completed (an exec: pipe would not be).
  auto caps = qmp("migrate-set-capabilities",
                  {{"capabilities", {{{"capability", "x-ignore-shared"}, {"state", true}}}}});
  if (!caps) return fail(caps.status());
  auto got = qmp("getfd", {{"fdname", kSnapshotFd}}, std::chrono::seconds(10), fd.get());
  if (!got) return fail(got.status());
  auto started = qmp("migrate", {{"uri", std::string("fd:") + kSnapshotFd}});
  if (!started) return fail(started.status());
  Status done = wait_for_migration(std::chrono::seconds(60));
  if (!done.ok()) return fail(done);
  if (::fsync(fd.get()) != 0) return fail(errno_status("fsync " + tmp.string()));
  fd.reset();
  if (::rename(tmp.c_str(), state.c_str()) != 0) return fail(errno_status("rename " + tmp.string()));
  return ok_status();
}

Status QemuVm::snapshot(const SnapshotFiles& files) {
  const auto started = Clock::now();
  if (!options_.owns_memory_file) {
    return error(Errc::unavailable,
                 "snapshot: this VM was restored and its RAM is a private copy-on-write mapping "
                 "of the template image, which vmm-qemu cannot write out; snapshot the source VM");
  }
  auto state = run_state();
  if (!state) return state.status().with_context("snapshot: ");
  if (*state == "running") {
    return error(Errc::invalid_argument, "snapshot: the VM is running; pause it first");
  }
  FCVM_RETURN_IF_ERROR(write_state(files.state).with_context("snapshot: "));
  const auto state_done = Clock::now();
  // The running VM keeps writing into DIR/mem once resumed; the snapshot gets its own copy.
  FCVM_RETURN_IF_ERROR(clone_file(QemuCommandLine::memory_file(options_.dir), files.memory, CloneMode::replace)
                           .with_context("snapshot: "));
  FCVM_RETURN_IF_ERROR(fsync_dir(files.state.parent_path().empty() ? "." : files.state.parent_path()));
  std::error_code ec;
  const auto size = std::filesystem::file_size(files.state, ec);
  log_->info("snapshot written in " + std::to_string(ms_since(started)) + " ms (state " +
             std::to_string(size) + " bytes in " +
             std::to_string(std::chrono::duration_cast<milliseconds>(state_done - started).count()) +
             " ms, memory copied in " + std::to_string(ms_since(state_done)) + " ms)");
  return ok_status();
}

Status QemuVm::load_snapshot(const std::filesystem::path& state, std::uint64_t stream_offset,
                             bool resume, milliseconds timeout) {
  const auto started = Clock::now();
  UniqueFd fd(::open(state.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_status("open " + state.string());
  if (::lseek(fd.get(), static_cast<off_t>(stream_offset), SEEK_SET) < 0) {
    return errno_status("seek " + state.string());
  }
  auto caps = qmp("migrate-set-capabilities",
                  {{"capabilities", {{{"capability", "x-ignore-shared"}, {"state", true}}}}});
  if (!caps) return caps.status();
  auto got = qmp("getfd", {{"fdname", kIncomingFd}}, std::chrono::seconds(10), fd.get());
  if (!got) return got.status();
  fd.reset();  // QEMU holds its own copy, at the same file offset
  auto incoming = qmp("migrate-incoming", {{"uri", std::string("fd:") + kIncomingFd}});
  if (!incoming) return incoming.status();
  FCVM_RETURN_IF_ERROR(wait_for_migration(timeout).with_context("load " + state.string() + ": "));
  const auto loaded = Clock::now();
  if (resume) FCVM_RETURN_IF_ERROR(this->resume());
  log_->info("snapshot loaded in " +
             std::to_string(std::chrono::duration_cast<milliseconds>(loaded - started).count()) +
             " ms" + (resume ? ", resumed" : ", left paused"));
  return ok_status();
}

Status QemuVm::shutdown(milliseconds timeout) {
  if (!child_.valid() || child_.try_wait()) {
    kill();
    return ok_status();
  }
  // A paused guest cannot act on an ACPI request: then ask QEMU itself to quit.
  auto state = run_state();
  if (state && *state == "running") {
    auto r = qmp("system_powerdown");
    if (!r) log_->warn("system_powerdown: " + r.status().message());
    if (child_.wait(timeout)) {
      kill();
      return ok_status();
    }
    log_->warn("guest did not power off within " + std::to_string(timeout.count()) +
               " ms; stopping QEMU");
  }
  // `quit` lets QEMU flush its block layer before it exits; SIGKILL is the last resort.
  if (!child_.try_wait()) {
    auto r = qmp("quit", nullptr, std::chrono::seconds(2));
    if (!r && !child_.try_wait()) log_->warn("quit: " + r.status().message());
    if (!child_.wait(std::chrono::seconds(2))) log_->warn("QEMU ignored quit; killing it");
  }
  kill();
  return ok_status();
}

Result<UniqueFd> QemuVm::connect_agent(Clock::time_point deadline) {
  if (options_.agent_socket.empty()) {
    return error(Errc::unavailable, "connect to the agent: this VM was started without an agent port");
  }
  FCVM_RETURN_IF_ERROR(exits_.check_running(child_));
  auto fd = connect_unix_socket(options_.agent_socket, deadline, child_.pidfd());
  if (!fd) {
    FCVM_RETURN_IF_ERROR(exits_.check_running(child_));
    return fd.status().with_context("connect to the agent: ");
  }
  return fd;
}

void QemuVm::kill() {
  if (child_.valid() && !child_.try_wait()) {
    child_.kill();
    log_->debug("QEMU killed");
  }
  qmp_.close();
  remove_runtime_files();
}

void QemuVm::remove_runtime_files() {
  std::error_code ec;
  std::filesystem::remove(QemuCommandLine::qmp_socket(options_.dir), ec);
  if (options_.owns_memory_file) std::filesystem::remove(QemuCommandLine::memory_file(options_.dir), ec);
}

}  // namespace fcvm::qemu
