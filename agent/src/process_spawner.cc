#include "process_spawner.h"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "console_log.h"
#include "setup_error.h"

namespace fcvm::agent {
namespace {

// What the child writes to the status pipe when it fails before or at exec.
enum class Stage : int { kStdio = 1, kGroups, kGid, kUid, kCwd, kExec, kInit };

struct ChildFailure {
  int stage;
  int err;
};

struct Pipe {
  OwnedFd read;
  OwnedFd write;
};

Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe");
  return {OwnedFd(fds[0]), OwnedFd(fds[1])};
}

// A new pseudo-terminal: the master, and the slave opened without becoming our
// controlling terminal (the child takes it with TIOCSCTTY).
struct Terminal {
  OwnedFd master;
  OwnedFd slave;
};

Terminal make_terminal(const Process& process) {
  Terminal t;
  t.master.reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!t.master) throw_errno("open a pseudo-terminal (/dev/ptmx)");
  char name[64];
  if (::grantpt(t.master.get()) != 0 || ::unlockpt(t.master.get()) != 0 ||
      ::ptsname_r(t.master.get(), name, sizeof name) != 0) {
    throw_errno("unlock the pseudo-terminal");
  }
  t.slave.reset(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!t.slave) throw_errno(std::string("open ") + name);
  // The process owns its terminal, as a login would (mesg, stty as a non-root user).
  if (::fchown(t.slave.get(), process.uid, static_cast<gid_t>(-1)) != 0) {
    log_line(std::string("chown ") + name + ": " + errno_text(errno));
  }
  winsize ws{};
  ws.ws_row = process.tty->rows;
  ws.ws_col = process.tty->cols;
  ::ioctl(t.master.get(), TIOCSWINSZ, &ws);
  return t;
}

OwnedFd duplicate(const OwnedFd& fd) {
  OwnedFd copy(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!copy) throw_errno("dup");
  return copy;
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

[[noreturn]] void child_fail(int status_fd, Stage stage, int err, int exit_code) {
  ChildFailure f{static_cast<int>(stage), err};
  [[maybe_unused]] ssize_t n = ::write(status_fd, &f, sizeof f);
  ::_exit(exit_code);
}

// Tries each PATH directory like execvp: remembers EACCES, skips "not here" errors, and
// stops at any other error. Returns the errno to report.
int exec_search(const std::string& program, const std::string& path, char* const argv[],
                char* const envp[]) {
  if (program.find('/') != std::string::npos) {
    ::execve(program.c_str(), argv, envp);
    return errno;
  }
  bool denied = false;
  std::string_view rest = path;
  for (;;) {
    const auto colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + program;
    ::execve(candidate.c_str(), argv, envp);
    switch (errno) {
      case EACCES: denied = true; break;
      case ENOENT: case ENOTDIR: case ESTALE: case ENODEV: case ETIMEDOUT: break;
      default: return errno;
    }
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return denied ? EACCES : ENOENT;
}

// PID 1 of a namespace gets only the signals it has a handler for: this one marks them.
void note_signal(int) {}

// The init of Process::init, run in the child that is PID 1 of its new PID and mount
// namespaces: mounts that namespace's /proc, forks the process (which returns here, to go on
// to its credentials and exec) and, in the init, forwards every signal to it, reaps every
// child, and exits with the process's status (128+N when signal N killed it), as podman's
// catatonit does. The kernel kills what is left in the namespace when the init exits.
void become_init(int status_fd) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    child_fail(status_fd, Stage::kInit, errno, 126);
  }
  sigset_t all;
  sigfillset(&all);
  ::sigprocmask(SIG_BLOCK, &all, nullptr);
  struct sigaction noted {};
  noted.sa_handler = note_signal;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &noted, nullptr);  // glibc's own refuse
  }
  const pid_t child = ::fork();
  if (child < 0) child_fail(status_fd, Stage::kInit, errno, 126);
  if (child == 0) {
    for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
    ::sigprocmask(SIG_UNBLOCK, &all, nullptr);
    return;
  }
  // The agent's descriptors (pipe ends, the status pipe) are close-on-exec, and the init
  // never execs: without this, it would hold the stdin pipe's write end open (no EOF).
  (void)status_fd;
  ::syscall(SYS_close_range, 3u, ~0u, 0u);
  ::prctl(PR_SET_NAME, "fcvm-init", 0, 0, 0);
  for (;;) {
    siginfo_t info{};
    const int sig = ::sigwaitinfo(&all, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      ::kill(child, sig);
      continue;
    }
    int status = 0;
    for (pid_t reaped; (reaped = ::waitpid(-1, &status, WNOHANG)) > 0;) {
      if (reaped != child) continue;
      ::_exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
    }
  }
}

std::string describe_failure(const Process& process, const std::string& path, ChildFailure f) {
  const std::string& program = process.args[0];
  switch (static_cast<Stage>(f.stage)) {
    case Stage::kStdio: return "cannot set up standard streams: " + errno_text(f.err);
    case Stage::kGroups: return "cannot set additional groups: " + errno_text(f.err);
    case Stage::kGid: return "cannot set gid " + std::to_string(process.gid) + ": " + errno_text(f.err);
    case Stage::kUid: return "cannot set uid " + std::to_string(process.uid) + ": " + errno_text(f.err);
    case Stage::kCwd:
      return "cannot change to working directory '" + process.cwd + "': " + errno_text(f.err);
    case Stage::kInit: return "cannot start the init (--init): " + errno_text(f.err);
    case Stage::kExec:
      if (f.err == ENOENT && program.find('/') == std::string::npos) {
        return "cannot run '" + program + "': executable file not found in PATH (" + path + ")";
      }
      return "cannot run '" + program + "': " + errno_text(f.err);
  }
  return "cannot run '" + program + "'";
}

}  // namespace

std::string ProcessSpawner::search_path(const std::vector<std::string>& env) {
  for (const auto& e : env) {
    if (e.rfind("PATH=", 0) == 0) return e.substr(5);
  }
  return std::string(kDefaultPath);
}

int ProcessSpawner::exit_code_for_exec_errno(int err) {
  return (err == ENOENT || err == ENOTDIR) ? 127 : 126;
}

void ProcessSpawner::make_directories(const std::string& path) {
  if (path.empty() || path[0] != '/') return;
  for (std::size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) return;
    if (slash == std::string::npos) return;
  }
}

SpawnedProcess ProcessSpawner::spawn(const Process& process) {
  // Everything the child needs is built before fork; the agent is single-threaded, so the
  // child could allocate, but this keeps the child's work to system calls.
  std::vector<char*> argv;
  for (const auto& a : process.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : process.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string path = search_path(process.env);
  std::vector<gid_t> groups(process.additional_gids.begin(), process.additional_gids.end());
  // A missing working directory is created (root-owned, 0755), as podman does; if that
  // fails, the child's chdir reports why.
  make_directories(process.cwd);

  std::optional<Terminal> tty;
  if (process.tty) tty = make_terminal(process);
  Pipe out = make_pipe();
  Pipe err = make_pipe();
  Pipe status = make_pipe();
  std::optional<Pipe> in;
  OwnedFd dev_null;
  if (tty) {
    // The terminal is every stream.
  } else if (process.stdin) {
    in = make_pipe();
  } else {
    dev_null.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!dev_null) throw_errno("open /dev/null");
  }

  // --init: the child is PID 1 of new PID and mount namespaces (a fork, like fork()).
  const pid_t pid = process.init
                        ? static_cast<pid_t>(::syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | SIGCHLD, nullptr,
                                                       nullptr, nullptr, nullptr))
                        : ::fork();
  if (pid < 0) throw_errno("fork for '" + process.args[0] + "'");
  if (pid == 0) {
    const int sfd = status.write.get();
    sigset_t all;
    sigfillset(&all);
    for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
    ::sigprocmask(SIG_UNBLOCK, &all, nullptr);
    ::setsid();
    if (tty) {
      const int t = tty->slave.get();
      if (::ioctl(t, TIOCSCTTY, 0) != 0 || ::dup2(t, 0) < 0 || ::dup2(t, 1) < 0 || ::dup2(t, 2) < 0) {
        child_fail(sfd, Stage::kStdio, errno, 126);
      }
    } else {
      const int in_fd = in ? in->read.get() : dev_null.get();
      if (::dup2(in_fd, 0) < 0 || ::dup2(out.write.get(), 1) < 0 || ::dup2(err.write.get(), 2) < 0) {
        child_fail(sfd, Stage::kStdio, errno, 126);
      }
    }
    if (process.init) become_init(sfd);  // returns in the process, its child
    if (::setgroups(groups.size(), groups.data()) != 0) child_fail(sfd, Stage::kGroups, errno, 126);
    if (::setgid(process.gid) != 0) child_fail(sfd, Stage::kGid, errno, 126);
    if (::setuid(process.uid) != 0) child_fail(sfd, Stage::kUid, errno, 126);
    if (::chdir(process.cwd.c_str()) != 0) child_fail(sfd, Stage::kCwd, errno, 126);
    const int e = exec_search(process.args[0], path, argv.data(), envp.data());
    child_fail(sfd, Stage::kExec, e, exit_code_for_exec_errno(e));
  }

  SpawnedProcess result;
  result.pid = pid;
  status.write.reset();
  ChildFailure failure{};
  ssize_t n;
  do {
    n = ::read(status.read.get(), &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof failure)) {
    result.start_error = describe_failure(process, path, failure);
    result.start_exit_code = static_cast<Stage>(failure.stage) == Stage::kExec
                                 ? exit_code_for_exec_errno(failure.err)
                                 : 126;
  }
  if (tty) {
    // Only the child may hold the slave: the master reads EIO once the child's side closed.
    tty->slave.reset();
    set_nonblocking(tty->master.get());
    result.stdout_pipe = duplicate(tty->master);
    if (process.stdin) result.stdin_pipe = duplicate(tty->master);
    result.terminal = std::move(tty->master);
    return result;
  }
  set_nonblocking(out.read.get());
  set_nonblocking(err.read.get());
  result.stdout_pipe = std::move(out.read);
  result.stderr_pipe = std::move(err.read);
  if (in) {
    set_nonblocking(in->write.get());
    result.stdin_pipe = std::move(in->write);
  }
  return result;
}

}  // namespace fcvm::agent
