// Runs the real fc-agent binary as an ordinary process (dry run: not PID 1, root mode
// "initramfs" only) on one end of a socketpair, and speaks the protocol to it through the
// host's AgentChannel: the event loop, sessions, signals and shutdown, without a VM.
#include <gtest/gtest.h>
#include <signal.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <thread>

#include "agent/agent_channel.h"
#include "fcvm/temp_dir.h"
#include "fcvm/unix_socket.h"
#include "session_log.h"

namespace fcvm {
namespace {

using namespace std::chrono_literals;
using agent::FrameType;

class DryRunAgent {
 public:
  DryRunAgent() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(sv[1], 3);  // clears CLOEXEC on the copy
      ::execl(FC_AGENT_BINARY, "fc-agent", "--port-fd", "3", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(sv[1]);
    auto ch = AgentChannel::adopt(UniqueFd(sv[0]));
    if (!ch) std::abort();
    channel_.emplace(std::move(*ch));
  }
  ~DryRunAgent() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  AgentChannel& channel() { return *channel_; }

  // Exit status of the agent process, or -1 if it is still running after `timeout`.
  int wait_exit(std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  std::optional<AgentChannel> channel_;
};

using agent_test::collect;

agent::Plan shell_plan(const std::string& script) {
  agent::Plan plan;
  plan.root.mode = agent::RootMode::kInitramfs;
  plan.process.args = {"/bin/sh", "-c", script};
  plan.process.env = {"PATH=/usr/bin:/bin"};
  return plan;
}

agent::Process shell(const std::string& script, bool stdin = false) {
  agent::Process p;
  p.args = {"/bin/sh", "-c", script};
  p.env = {"PATH=/usr/bin:/bin"};
  p.stdin = stdin;
  return p;
}

TEST(AgentDryRun, RunsThePlanAndPowersOffWhenMainExits) {
  DryRunAgent a;
  auto hello = a.channel().wait_hello(5000ms);
  ASSERT_TRUE(hello) << hello.status().message();
  EXPECT_EQ(hello->agent, "fc-agent");
  EXPECT_EQ(hello->protocol, agent::kProtocolVersion);
  EXPECT_FALSE(hello->kernel.empty());
  ASSERT_TRUE(a.channel().send_plan(shell_plan("echo out; echo err >&2; exit 3")).ok());
  auto logs = collect(a.channel(), {0});
  EXPECT_TRUE(logs[0].started);
  EXPECT_EQ(logs[0].out, "out\n");
  EXPECT_EQ(logs[0].err, "err\n");
  ASSERT_TRUE(logs[0].exit);
  EXPECT_EQ(*logs[0].exit, (agent::Exit{3, 0}));
  EXPECT_EQ(a.wait_exit(), 0);  // dry-run "power off"
  auto after = a.channel().next_frame(2000ms);
  EXPECT_FALSE(after);
  EXPECT_TRUE(a.channel().closed());
}

TEST(AgentDryRun, AHeldPlanWaitsForGoBeforeTheProcessStarts) {
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  auto plan = shell_plan("echo started");
  plan.hold = true;
  ASSERT_TRUE(a.channel().send_plan(plan).ok());
  auto ready = a.channel().next_frame(5000ms);
  ASSERT_TRUE(ready) << ready.status().message();
  EXPECT_EQ(ready->type, FrameType::kReady);
  EXPECT_EQ(ready->session, agent::kMainSession);
  // Held: an EXEC is refused and a GO on another session too; nothing has started.
  ASSERT_TRUE(a.channel().send_exec(5, shell("echo no")).ok());
  ASSERT_TRUE(a.channel().send(FrameType::kGo, 5, "{}").ok());
  auto refused = collect(a.channel(), {5});
  EXPECT_FALSE(refused[5].started);
  ASSERT_TRUE(refused[5].exit);
  EXPECT_EQ(refused[5].exit->code, 126);
  auto error = a.channel().next_frame(5000ms);
  ASSERT_TRUE(error) << error.status().message();
  EXPECT_EQ(error->type, FrameType::kError);
  EXPECT_NE(error->payload.find("GO"), std::string::npos) << error->payload;

  ASSERT_TRUE(a.channel().send(FrameType::kGo, 0, agent::GoRequest{"web-2"}.to_payload()).ok());
  auto logs = collect(a.channel(), {0});
  EXPECT_TRUE(logs[0].started);
  EXPECT_EQ(logs[0].out, "started\n");
  EXPECT_EQ(a.wait_exit(), 0);
}

TEST(AgentDryRun, RepeatsHelloUntilPlan) {
  DryRunAgent a;
  agent::FrameDecoder decoder(agent::Direction::kGuestToHost);
  std::vector<agent::Frame> frames;
  const auto start = std::chrono::steady_clock::now();
  char buf[4096];
  while (frames.size() < 2 && std::chrono::steady_clock::now() - start < 5s) {
    const ssize_t n = ::recv(a.channel().fd(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      ASSERT_TRUE(decoder.feed(std::string_view(buf, static_cast<size_t>(n)), frames));
    }
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].type, FrameType::kHello);
  EXPECT_EQ(frames[1].type, FrameType::kHello);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 900ms);
}

TEST(AgentDryRun, MalformedPlanIsReportedAndPowersOff) {
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  ASSERT_TRUE(a.channel()
                  .send(FrameType::kPlan, 0,
                        R"({"protocol":2,"root":{"mode":"initramfs"},"process":{"env":[]}})")
                  .ok());
  auto f = a.channel().next_frame(5000ms);
  ASSERT_TRUE(f) << f.status().message();
  EXPECT_EQ(f->type, FrameType::kError);
  EXPECT_EQ(f->session, 0u);
  std::string err;
  EXPECT_EQ(agent::parse_error_message(f->payload, &err)->message,
            "invalid plan: plan.process.args: missing");
  EXPECT_EQ(a.wait_exit(), 0);
}

TEST(AgentDryRun, UnknownRootModeIsReported) {
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  ASSERT_TRUE(a.channel().send(FrameType::kPlan, 0, R"({"protocol":2,"root":{"mode":"zfs"},
      "process":{"args":["/bin/true"]}})").ok());
  auto f = a.channel().next_frame(5000ms);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->type, FrameType::kError);
  EXPECT_NE(f->payload.find("plan.root.mode: unknown mode 'zfs'"), std::string::npos) << f->payload;
  EXPECT_EQ(a.wait_exit(), 0);
}

TEST(AgentDryRun, MainProgramNotFoundIs127AndPowersOff) {
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  agent::Plan plan = shell_plan("");
  plan.process.args = {"no-such-program-fcvm"};
  plan.shutdown_on_exit = false;  // a failed start powers off regardless
  ASSERT_TRUE(a.channel().send_plan(plan).ok());
  auto logs = collect(a.channel(), {0});
  EXPECT_FALSE(logs[0].started);
  ASSERT_EQ(logs[0].errors.size(), 1u);
  EXPECT_EQ(logs[0].errors[0],
            "cannot run 'no-such-program-fcvm': executable file not found in PATH (/usr/bin:/bin)");
  ASSERT_TRUE(logs[0].exit);
  EXPECT_EQ(logs[0].exit->code, 127);
  EXPECT_EQ(a.wait_exit(), 0);
}

TEST(AgentDryRun, ExecSessionsStdinAndSignals) {
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  ASSERT_TRUE(a.channel().send_plan(shell_plan("exec sleep 30")).ok());
  auto started = a.channel().next_frame(5000ms);
  ASSERT_TRUE(started);
  EXPECT_EQ(started->type, FrameType::kStarted);

  // Session 1: output and exit code.
  ASSERT_TRUE(a.channel().send_exec(1, shell("echo exec-out; exit 7")).ok());
  auto s1 = collect(a.channel(), {1});
  EXPECT_TRUE(s1[1].started);
  EXPECT_EQ(s1[1].out, "exec-out\n");
  EXPECT_EQ(*s1[1].exit, (agent::Exit{7, 0}));

  // Session 2: stdin through to EOF.
  ASSERT_TRUE(a.channel().send_exec(2, shell("cat; echo done", /*stdin=*/true)).ok());
  ASSERT_TRUE(a.channel().send_stdin(2, "hello ").ok());
  ASSERT_TRUE(a.channel().send_stdin(2, "world\n").ok());
  ASSERT_TRUE(a.channel().send_stdin_eof(2).ok());
  auto s2 = collect(a.channel(), {2});
  EXPECT_EQ(s2[2].out, "hello world\ndone\n");
  EXPECT_EQ(*s2[2].exit, (agent::Exit{0, 0}));

  // Session 3: not found.
  agent::Process missing;
  missing.args = {"/no/such/tool"};
  ASSERT_TRUE(a.channel().send_exec(3, missing).ok());
  auto s3 = collect(a.channel(), {3});
  EXPECT_FALSE(s3[3].started);
  ASSERT_EQ(s3[3].errors.size(), 1u);
  EXPECT_EQ(s3[3].errors[0], "cannot run '/no/such/tool': No such file or directory");
  EXPECT_EQ(s3[3].exit->code, 127);

  // Session 4: killed by a forwarded signal.
  ASSERT_TRUE(a.channel().send_exec(4, shell("exec sleep 30")).ok());
  auto s4_started = a.channel().next_frame(5000ms);
  ASSERT_TRUE(s4_started);
  EXPECT_EQ(s4_started->type, FrameType::kStarted);
  ASSERT_TRUE(a.channel().send_signal(4, SIGKILL).ok());
  auto s4 = collect(a.channel(), {4});
  EXPECT_EQ(*s4[4].exit, (agent::Exit{137, 9}));

  // A session id in use is refused; session 0 cannot be exec'ed.
  ASSERT_TRUE(a.channel().send(FrameType::kExec, 0, agent::to_json(shell("true")).dump()).ok());
  auto refused = a.channel().next_frame(5000ms);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->type, FrameType::kError);

  // The main process: SIGTERM ends it and the agent powers off.
  ASSERT_TRUE(a.channel().send_signal(0, SIGTERM).ok());
  auto main = collect(a.channel(), {0});
  EXPECT_EQ(*main[0].exit, (agent::Exit{143, 15}));
  EXPECT_EQ(a.wait_exit(), 0);
}

TEST(AgentDryRun, ExecBeforePlanIsRefused) {
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  ASSERT_TRUE(a.channel().send_exec(5, shell("true")).ok());
  auto logs = collect(a.channel(), {5});
  EXPECT_FALSE(logs[5].started);
  ASSERT_EQ(logs[5].errors.size(), 1u);
  EXPECT_EQ(logs[5].errors[0], "EXEC before PLAN: the container is not running yet");
  EXPECT_EQ(logs[5].exit->code, 126);
}

TEST(AgentDryRun, ShutdownEscalatesToSigkill) {
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  agent::Plan plan = shell_plan("trap '' TERM; echo ready; while :; do sleep 0.05; done");
  plan.shutdown_on_exit = false;
  ASSERT_TRUE(a.channel().send_plan(plan).ok());
  for (;;) {
    auto f = a.channel().next_frame(5000ms);
    ASSERT_TRUE(f);
    if (f->type == FrameType::kStdout) break;  // the trap is installed
  }
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(a.channel().send_shutdown(300ms).ok());
  auto logs = collect(a.channel(), {0});
  EXPECT_EQ(*logs[0].exit, (agent::Exit{137, 9}));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 250ms);
  EXPECT_EQ(a.wait_exit(), 0);
}

TEST(AgentDryRun, LargeOutputArrivesWhole) {
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  ASSERT_TRUE(a.channel().send_plan(shell_plan("head -c 3000000 /dev/zero; echo tail >&2")).ok());
  auto logs = collect(a.channel(), {0}, 30000ms);
  EXPECT_EQ(logs[0].out.size(), 3000000u);
  EXPECT_EQ(logs[0].err, "tail\n");
  EXPECT_EQ(logs[0].exit->code, 0);
}

TEST(AgentDryRun, ProtocolErrorShutsDown) {
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  const char junk[9] = {0, 0, 0, 0, 0x7f, 0, 0, 0, 0};
  ASSERT_EQ(::send(a.channel().fd(), junk, sizeof junk, MSG_NOSIGNAL), 9);
  auto f = a.channel().next_frame(5000ms);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->type, FrameType::kError);
  EXPECT_NE(f->payload.find("unknown frame type 0x7f"), std::string::npos);
  EXPECT_EQ(a.wait_exit(), 0);
}

// True once `pid` (a process of this host: the dry-run agent's children are) is gone.
bool process_gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

// True while some descendant of `pid` sleeps writing to a full pipe.
bool blocked_on_pipe(pid_t pid) {
  std::ifstream children("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  for (pid_t child; children >> child;) {
    std::ifstream wchan("/proc/" + std::to_string(child) + "/wchan");
    std::string where;
    wchan >> where;
    // "pipe_write", or "anon_pipe_write" on newer kernels.
    if (where.find("pipe_write") != std::string::npos || blocked_on_pipe(child)) return true;
  }
  return false;
}

// A host that stops reading must still get every byte and the exit status, however long
// it stalls: the agent used to give up 2 s after the process exited and power off.
TEST(AgentDryRun, StalledHostGetsAllOutputAndTheExit) {
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  ASSERT_TRUE(a.channel().send_plan(shell_plan("head -c 3000000 /dev/zero; exit 3")).ok());
  auto started = a.channel().next_frame(5000ms);
  ASSERT_TRUE(started && started->type == FrameType::kStarted);
  std::string err;
  const pid_t pid = static_cast<pid_t>(agent::parse_started(started->payload, &err)->pid);
  // Stop reading. The output fits in the agent's queue, so the process exits and is reaped.
  while (!process_gone(pid)) std::this_thread::sleep_for(10ms);
  // Stall longer than the agent's old give-up, then read.
  std::this_thread::sleep_for(3s);
  auto logs = collect(a.channel(), {0}, 60000ms);
  EXPECT_EQ(logs[0].out.size(), 3000000u);
  ASSERT_TRUE(logs[0].exit);
  EXPECT_EQ(logs[0].exit->code, 3);
  EXPECT_EQ(a.wait_exit(), 0);
}

// With an output window, a session whose output is not credited blocks its process on its
// pipe, and only it: another session's output and exit flow meanwhile. Credit then releases
// every byte and the exit.
TEST(AgentDryRun, OutputWindowStallsOnlyItsOwnSession) {
  constexpr std::uint32_t kWindow = 64 << 10;
  constexpr std::size_t kTotal = 2000000;
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  agent::Plan plan = shell_plan("head -c " + std::to_string(kTotal) + " /dev/zero; exit 4");
  plan.process.output_window = kWindow;
  ASSERT_TRUE(a.channel().send_plan(plan).ok());

  std::size_t main_bytes = 0;
  std::optional<pid_t> main_pid;
  // Read session 0 up to its window without crediting, until its writer blocks.
  while (!main_pid || !blocked_on_pipe(*main_pid)) {
    auto f = a.channel().next_frame(100ms);
    if (!f) continue;
    std::string err;
    if (f->type == FrameType::kStarted) main_pid = agent::parse_started(f->payload, &err)->pid;
    if (f->type == FrameType::kStdout) main_bytes += f->payload.size();
  }
  EXPECT_LE(main_bytes, kWindow);

  agent::Process exec = shell("echo other; exit 5");
  exec.output_window = kWindow;
  ASSERT_TRUE(a.channel().send_exec(1, exec).ok());
  auto logs = collect(a.channel(), {1});
  EXPECT_EQ(logs[1].out, "other\n");
  EXPECT_EQ(logs[1].exit->code, 5);
  main_bytes += logs[0].out.size();
  EXPECT_LE(main_bytes, kWindow) << "session 0 sent beyond its window";
  EXPECT_FALSE(logs[0].exit);

  // Credit what arrives: everything follows, then the exit.
  std::size_t credited = 0;
  std::optional<agent::Exit> exit;
  while (!exit) {
    if (credited < main_bytes) {
      const auto grant = static_cast<std::uint32_t>(main_bytes - credited);
      ASSERT_TRUE(a.channel().send(FrameType::kCredit, 0, agent::Credit{grant}.to_payload()).ok());
      credited = main_bytes;
    }
    auto f = a.channel().next_frame(10000ms);
    ASSERT_TRUE(f) << f.status().message();
    std::string err;
    if (f->type == FrameType::kStdout) main_bytes += f->payload.size();
    if (f->type == FrameType::kExit) exit = agent::parse_exit(f->payload, &err);
    EXPECT_LE(main_bytes - credited, kWindow);
  }
  EXPECT_EQ(main_bytes, kTotal);
  EXPECT_EQ(exit->code, 4);
  EXPECT_EQ(a.wait_exit(), 0);
}

// STDIN is credited back as the process consumes it; bytes past the window are refused.
TEST(AgentDryRun, StdinIsCreditedAndWindowed) {
  DryRunAgent a;
  ASSERT_TRUE(a.channel().wait_hello(5000ms));
  ASSERT_TRUE(a.channel().send_plan(shell_plan("exec sleep 30")).ok());
  ASSERT_TRUE(a.channel().send_exec(1, shell("wc -c", /*stdin=*/true)).ok());
  const std::string chunk(100000, 'x');
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(a.channel().send_stdin(1, chunk).ok());
  ASSERT_TRUE(a.channel().send_stdin_eof(1).ok());
  ASSERT_TRUE(a.channel().flush(10000ms).ok());
  std::uint64_t credited = 0;
  std::string out;
  std::optional<agent::Exit> exit;
  while (!exit) {
    auto f = a.channel().next_frame(10000ms);
    ASSERT_TRUE(f) << f.status().message();
    std::string err;
    if (f->session != 1) continue;
    if (f->type == FrameType::kStdinCredit) credited += agent::parse_credit(f->payload, &err)->bytes;
    if (f->type == FrameType::kStdout) out += f->payload;
    if (f->type == FrameType::kExit) exit = agent::parse_exit(f->payload, &err);
  }
  EXPECT_EQ(out, "200000\n");
  EXPECT_EQ(credited, 200000u);

  // A host that ignores the window: the excess is dropped and reported, not buffered.
  ASSERT_TRUE(a.channel().send_exec(2, shell("exec sleep 30", /*stdin=*/true)).ok());
  const std::string big(agent::kStdinWindow, 'y');
  ASSERT_TRUE(a.channel().send_stdin(2, big).ok());
  ASSERT_TRUE(a.channel().send_stdin(2, big).ok());
  ASSERT_TRUE(a.channel().flush(10000ms).ok());
  for (;;) {
    auto f = a.channel().next_frame(10000ms);
    ASSERT_TRUE(f) << f.status().message();
    if (f->session != 2 || f->type != FrameType::kError) continue;
    EXPECT_NE(f->payload.find("STDIN beyond the window"), std::string::npos) << f->payload;
    break;
  }
  ASSERT_TRUE(a.channel().send_signal(0, SIGKILL).ok());
  EXPECT_EQ(a.wait_exit(10000ms), 0);
}

// fc-agent listening for its host (the path a vsock guest takes), here on a unix socket.
class ListeningAgent {
 public:
  explicit ListeningAgent(const std::string& listen_option, const std::string& address)
      : address_(address) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl(FC_AGENT_BINARY, "fc-agent", listen_option.c_str(), address.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~ListeningAgent() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }

  // A new host connection (the agent keeps serving the latest one).
  Result<AgentChannel> connect() const {
    auto fd = connect_unix_socket(address_, std::chrono::steady_clock::now() + 30s);
    if (!fd) return fd.status();
    return AgentChannel::adopt(std::move(*fd));
  }

 private:
  std::string address_;
  pid_t pid_ = -1;
};

TEST(AgentAttach, AnswersWithItsBootIdOnEveryConnectionAndRunsAPlanAfterwards) {
  auto dir = TempDir::create("fc-agent-attach-test-");
  ASSERT_TRUE(dir.ok());
  ListeningAgent agent("--listen-unix", (dir->path() / "agent.sock").string());
  auto connected = agent.connect();
  ASSERT_TRUE(connected.ok()) << connected.status().message();
  std::optional<AgentChannel> first(std::move(*connected));
  auto hello = first->wait_hello(10s);
  ASSERT_TRUE(hello.ok()) << hello.status().message();
  ASSERT_EQ(hello->boot_id.size(), agent::kBootIdHexDigits);
  auto attached = first->attach(1, hello->boot_id, 10s);
  ASSERT_TRUE(attached.ok()) << attached.status().message();
  EXPECT_EQ(attached->generation, 1u);
  EXPECT_TRUE(attached->sessions.empty());

  // The host goes away in the middle of a frame (as at a snapshot) and comes back: the torn
  // frame is dropped, the agent is the same (same boot id) and still takes a plan.
  std::string torn;
  agent::append_frame(torn, FrameType::kSignal, 0, R"({"signal":15})");
  ASSERT_EQ(::send(first->fd(), torn.data(), 5, MSG_NOSIGNAL), 5);
  first.reset();
  auto second = agent.connect();
  ASSERT_TRUE(second.ok()) << second.status().message();
  auto again = second->attach(2, hello->boot_id, 10s);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->generation, 2u);

  ASSERT_TRUE(second->send_plan(shell_plan("echo resumed")).ok());
  auto logs = collect(*second, {0});
  EXPECT_EQ(logs[0].out, "resumed\n");
  ASSERT_TRUE(logs[0].exit);
}

TEST(AgentAttach, ARestartedAgentHasANewBootIdAndIsRefusedAsAClone) {
  auto dir = TempDir::create("fc-agent-attach-test-");
  ASSERT_TRUE(dir.ok());
  std::string first_boot;
  {
    ListeningAgent agent("--listen-unix", (dir->path() / "a.sock").string());
    auto ch = agent.connect();
    ASSERT_TRUE(ch.ok());
    auto attached = ch->attach(1, std::nullopt, 10s);
    ASSERT_TRUE(attached.ok()) << attached.status().message();
    first_boot = attached->boot_id;
  }
  ListeningAgent agent("--listen-unix", (dir->path() / "b.sock").string());
  auto ch = agent.connect();
  ASSERT_TRUE(ch.ok());
  auto refused = ch->attach(1, first_boot, 10s);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Errc::protocol);
  EXPECT_NE(refused.status().message().find("booted afresh"), std::string::npos)
      << refused.status().message();
}

// The vsock transport, through the kernel's loopback (CID 1) where the host has it.
TEST(AgentAttach, ListensOnVsockWhereTheKernelHasLoopback) {
  if (!std::filesystem::exists("/sys/module/vsock_loopback")) {
    GTEST_SKIP() << "this host kernel has no vsock_loopback (and /dev/vsock belongs to the "
                    "machine's own hypervisor link), so no AF_VSOCK connection can be made here";
  }
  const unsigned port = 40000 + static_cast<unsigned>(::getpid() % 20000);
  ListeningAgent agent("--listen-vsock", std::to_string(port));
  UniqueFd fd;
  for (int attempt = 0; attempt < 1000 && !fd; ++attempt) {
    UniqueFd s(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_vm addr{};
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_LOCAL;
    addr.svm_port = port;
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) fd = std::move(s);
    else ::poll(nullptr, 0, 10);  // the agent is still starting
  }
  ASSERT_TRUE(fd.valid()) << "no vsock connection to port " << port;
  auto ch = AgentChannel::adopt(std::move(fd));
  ASSERT_TRUE(ch.ok());
  auto attached = ch->attach(1, std::nullopt, 10s);
  ASSERT_TRUE(attached.ok()) << attached.status().message();
}

}  // namespace
}  // namespace fcvm
