#include "fcvm/child_process.h"
#include "fcvm/program_path.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>

extern char** environ;

namespace fcvm {
namespace {

// What the child reports through the CLOEXEC pipe when it fails before exec.
struct ChildFailure {
  int stage;  // index into kStages
  int err;
};
constexpr std::array<const char*, 6> kStages = {"join namespace", "redirect stdio", "chdir",
                                                "exec", "set parent-death signal", "setsid"};

std::vector<std::string> build_env(const std::vector<std::string>& add) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    auto key = entry.substr(0, entry.find('=') + 1);
    bool overridden = false;
    for (const auto& a : add) overridden |= a.compare(0, key.size(), key) == 0;
    if (!overridden) env.emplace_back(entry);
  }
  env.insert(env.end(), add.begin(), add.end());
  return env;
}

ExitStatus from_siginfo(const siginfo_t& info) {
  ExitStatus st;
  if (info.si_code == CLD_EXITED) {
    st.code = info.si_status;
  } else {
    st.signal = info.si_status;
    st.code = 128 + info.si_status;
  }
  return st;
}

[[noreturn]] void child_fail(int fd, int stage) {
  ChildFailure f{stage, errno};
  ssize_t ignored = ::write(fd, &f, sizeof f);
  (void)ignored;
  ::_exit(127);
}

}  // namespace

std::string ExitStatus::describe() const {
  if (signal != 0) return "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "exit code " + std::to_string(code);
}

ChildProcess::ChildProcess(ChildProcess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), pidfd_(std::move(o.pidfd_)), exit_(std::move(o.exit_)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    if (valid()) kill();
    pid_ = std::exchange(o.pid_, -1);
    pidfd_ = std::move(o.pidfd_);
    exit_ = std::move(o.exit_);
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (valid()) kill();
}

Result<ChildProcess> ChildProcess::spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return error(Errc::invalid_argument, "spawn: empty argv");
  const std::string program = find_program(options.argv[0]).string();
  if (program.empty()) return error(Errc::unavailable, options.argv[0] + ": not found in PATH");

  // Everything the child needs is built before fork: after it only async-signal-safe calls.
  std::vector<char*> argv;
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const auto env_strings = build_env(options.env_add);
  std::vector<char*> envp;
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  std::vector<std::string> ns_paths;
  for (const auto& p : options.namespaces) ns_paths.push_back(p.string());
  const std::string cwd = options.cwd.string();

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return errno_status("spawn " + options.argv[0] + ": pipe");
  UniqueFd err_read(pipefd[0]), err_write(pipefd[1]);
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return errno_status("spawn " + options.argv[0] + ": fork");
  if (pid == 0) {
    const int efd = err_write.get();
    if (options.die_with_parent) {
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(efd, 4);
      if (::getppid() != parent) ::_exit(127);
    }
    if (options.new_session && ::setsid() < 0) child_fail(efd, 5);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);
    for (const auto& ns : ns_paths) {
      int fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, 0) != 0) child_fail(efd, 0);
      ::close(fd);
    }
    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    const int fds[3] = {options.stdin_fd, options.stdout_fd, options.stderr_fd};
    for (int i = 0; i < 3; ++i) {
      int src = fds[i] >= 0 ? fds[i] : null_fd;
      if (src < 0 || ::dup2(src, i) < 0) child_fail(efd, 1);
    }
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) child_fail(efd, 2);
    // No descriptor of ours leaks into the child beyond stdio.
    ::syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */);
    ::execve(program.c_str(), argv.data(), envp.data());
    child_fail(efd, 3);
  }

  err_write.reset();
  ChildProcess child;
  child.pid_ = pid;
  child.pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!child.pidfd_) {
    Status st = errno_status("pidfd_open");
    child.kill();
    return st;
  }
  ChildFailure failure{};
  ssize_t n;
  do n = ::read(err_read.get(), &failure, sizeof failure);
  while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof failure)) {
    child.kill();
    std::string what = options.argv[0] + ": " + kStages[static_cast<size_t>(failure.stage)];
    if (failure.stage == 0) what += " (" + options.namespaces.front().string() + "...)";
    if (failure.stage == 2) what += " " + cwd;
    return errno_status(what, failure.err);
  }
  return child;
}

std::optional<ExitStatus> ChildProcess::try_wait() {
  if (exit_ || !valid()) return exit_;
  siginfo_t info{};
  if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info,
               WEXITED | WNOHANG) == 0 &&
      info.si_pid != 0) {
    exit_ = from_siginfo(info);
  }
  return exit_;
}

std::optional<ExitStatus> ChildProcess::wait(std::optional<std::chrono::milliseconds> timeout) {
  if (exit_ || !valid()) return exit_;
  if (timeout) {
    const auto deadline = std::chrono::steady_clock::now() + *timeout;
    for (;;) {
      if (try_wait()) return exit_;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{pidfd_.get(), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
    }
  }
  siginfo_t info{};
  int rc;
  do rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info, WEXITED);
  while (rc < 0 && errno == EINTR);
  if (rc == 0) exit_ = from_siginfo(info);
  return exit_;
}

Status ChildProcess::signal(int sig) {
  if (!valid() || try_wait()) return ok_status();
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) != 0 && errno != ESRCH) {
    return errno_status("signal pid " + std::to_string(pid_));
  }
  return ok_status();
}

ExitStatus ChildProcess::kill() {
  if (!valid()) return exit_.value_or(ExitStatus{});
  (void)signal(SIGKILL);
  wait();
  return exit_.value_or(ExitStatus{});
}

void ChildProcess::detach() {
  pid_ = -1;
  pidfd_.reset();
}

Result<std::string> run_command(const std::vector<std::string>& argv,
                                const std::filesystem::path& cwd) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return errno_status("pipe");
  UniqueFd out_r(out[0]), out_w(out[1]);
  if (::pipe2(err, O_CLOEXEC) != 0) return errno_status("pipe");
  UniqueFd err_r(err[0]), err_w(err[1]);
  SpawnOptions opts;
  opts.argv = argv;
  opts.cwd = cwd;
  opts.stdout_fd = out_w.get();
  opts.stderr_fd = err_w.get();
  auto child = ChildProcess::spawn(opts);
  if (!child) return child.status();
  out_w.reset();
  err_w.reset();

  std::string stdout_text, stderr_text;
  pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
  std::string* sinks[2] = {&stdout_text, &stderr_text};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return errno_status("poll");
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  auto status = child->wait();
  if (!status || !status->success()) {
    while (!stderr_text.empty() && (stderr_text.back() == '\n' || stderr_text.back() == ' '))
      stderr_text.pop_back();
    auto nl = stderr_text.rfind('\n');
    std::string last = nl == std::string::npos ? stderr_text : stderr_text.substr(nl + 1);
    std::string msg = argv[0] + " failed (" + (status ? status->describe() : "unknown") + ")";
    if (!last.empty()) msg += ": " + last;
    return error(Errc::io, msg);
  }
  return stdout_text;
}

}  // namespace fcvm
