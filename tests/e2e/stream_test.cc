// The container's byte streams end to end, against real microVMs: output under
// backpressure (slow and stalled readers), readers that go away, capped logs, stdin (-i)
// and terminals (-t) for `podman run` and `fcvm exec`.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "fcvm/atomic_file.h"
#include "fcvm/unique_fd.h"
#include "fcvm_cli.h"

namespace fcvm::test {
namespace {

namespace fs = std::filesystem;

struct Pipe {
  UniqueFd read, write;
};

Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Reads `fd` to its end (EOF, or EIO on a terminal whose other side is gone).
std::string read_to_end(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

// Reads `fd` until what was read contains every one of `needles`; returns it all.
std::string read_until(int fd, const std::vector<std::string>& needles) {
  std::string out;
  char buf[4096];
  auto complete = [&] {
    for (const auto& n : needles) {
      if (out.find(n) == std::string::npos) return false;
    }
    return true;
  };
  // Gives up after a minute: a guest that never prints must fail the test, not hang it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!complete()) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0) break;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

// Resident memory of a process, in bytes.
std::uint64_t rss_bytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
    ::signal(SIGPIPE, SIG_IGN);  // a writer into a pipe fcvm closed fails the test, not the run
    cli_ = std::make_unique<FcvmCli>();
  }
  // Detached VMs outlive the data dir's removal: stop them first.
  void TearDown() override {
    for (const auto& name : idle_vms_) (void)cli_->run({"stop", "-t", "0", name});
  }

  std::vector<std::string> run_args(std::vector<std::string> args) const {
    args.insert(args.begin(), {"podman", "run", "--kernel", FcvmCli::kernel().string()});
    return args;
  }

  // Starts fcvm with its stdin, stdout and stderr on the given fds (-1: /dev/null).
  ChildProcess spawn(const std::vector<std::string>& args, int in, int out, int err,
                     std::vector<std::string> env = {}, bool new_session = false) const {
    SpawnOptions opts;
    opts.argv = cli_->base_args();
    opts.argv.insert(opts.argv.end(), args.begin(), args.end());
    opts.stdin_fd = in;
    opts.stdout_fd = out;
    opts.stderr_fd = err;
    opts.env_add = std::move(env);
    opts.new_session = new_session;
    auto child = ChildProcess::spawn(opts);
    if (!child) throw std::runtime_error(child.status().message());
    return std::move(child).value();
  }

  // A detached VM that idles, for exec tests.
  void start_idle_vm(const std::string& name) {
    auto r = cli_->run(run_args({"-d", "--name", name, FcvmCli::hello_image(), "sleep", "600"}));
    ASSERT_EQ(r.code, 0) << r.err;
    idle_vms_.push_back(name);
  }

  std::unique_ptr<FcvmCli> cli_;
  std::vector<std::string> idle_vms_;
};

// A reader that stalls and then reads everything gets every byte and the exit code; while
// it stalls, the VM's loop still serves `fcvm exec` (our stdout never blocks it).
TEST_F(StreamTest, SlowReaderGetsEverythingAndTheExitCode) {
  Pipe out = make_pipe();
  ChildProcess run = spawn(run_args({"--name", "slow", FcvmCli::hello_image(), "sh", "-c",
                                     "head -c 5000000 /dev/zero | tr '\\0' a; exit 3"}),
                           -1, out.write.get(), -1);
  out.write.reset();
  // Stall until output has reached the host and filled our pipe...
  ASSERT_TRUE(cli_->wait_status("slow", "running", std::chrono::seconds(120)));
  const fs::path log = fs::path(cli_->record("slow")["vm_dir"].get<std::string>()) / "container.log";
  while (!fs::exists(log) || fs::file_size(log) < (128u << 10)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // ...and, still stalled, another client is served.
  auto other = cli_->run({"exec", "slow", "echo", "served"});
  EXPECT_EQ(other.code, 0) << other.err;
  EXPECT_EQ(other.out, "served\n");
  const std::string got = read_to_end(out.read.get());
  EXPECT_EQ(got.size(), 5000000u);
  EXPECT_EQ(got.find_first_not_of('a'), std::string::npos);
  auto st = run.wait();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->code, 3);
}

// A stalled `fcvm exec` client slows its own command only: the VM's fcvm process does not
// grow with the output it is not reading, another exec works meanwhile, and once the
// client reads, it gets every byte and the exit code.
TEST_F(StreamTest, StalledExecClientIsBoundedAndGetsEverything) {
  start_idle_vm("stall");
  const pid_t owner = cli_->record("stall")["pid"].get<pid_t>();
  const std::uint64_t rss_before = rss_bytes(owner);
  constexpr std::size_t kBytes = 30000000;
  Pipe out = make_pipe();
  ChildProcess exec = spawn({"exec", "stall", "sh", "-c",
                             "head -c " + std::to_string(kBytes) + " /dev/zero | tr '\\0' b; exit 4"},
                            -1, out.write.get(), -1);
  out.write.reset();
  // While this client does not read, the other one is served; then the owner's memory is
  // measured, with the command blocked on its output window in the guest.
  auto other = cli_->run({"exec", "stall", "sh", "-c", "echo served"});
  EXPECT_EQ(other.code, 0) << other.err;
  EXPECT_EQ(other.out, "served\n");
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the stall itself, not a wait
  const std::uint64_t rss_stalled = rss_bytes(owner);
  RecordProperty("owner_rss_before", std::to_string(rss_before));
  RecordProperty("owner_rss_stalled", std::to_string(rss_stalled));
  EXPECT_LT(rss_stalled, rss_before + (8u << 20))
      << "the VM's fcvm process grew from " << rss_before << " to " << rss_stalled << " bytes";
  const std::string got = read_to_end(out.read.get());
  EXPECT_EQ(got.size(), kBytes);
  EXPECT_EQ(got.find_first_not_of('b'), std::string::npos);
  auto st = exec.wait();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->code, 4);
}

// `... | head -1`: when our reader goes away, the container gets SIGPIPE and the run
// ends with its code (141); `fcvm exec` ends as a command killed by SIGPIPE would, and
// the VM runs on.
TEST_F(StreamTest, ClosedReaderEndsRunAndExec) {
  {
    Pipe out = make_pipe();
    ChildProcess run = spawn(run_args({"--rm", FcvmCli::hello_image(), "yes"}), -1, out.write.get(), -1);
    out.write.reset();
    EXPECT_EQ(read_until(out.read.get(), {"y\n"}).substr(0, 2), "y\n");
    out.read.reset();
    auto st = run.wait();
    ASSERT_TRUE(st);
    EXPECT_EQ(st->code, 128 + SIGPIPE);
  }
  start_idle_vm("pipes");
  Pipe out = make_pipe();
  ChildProcess exec = spawn({"exec", "pipes", "yes"}, -1, out.write.get(), -1);
  out.write.reset();
  EXPECT_EQ(read_until(out.read.get(), {"y\n"}).substr(0, 2), "y\n");
  out.read.reset();
  auto st = exec.wait();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->code, 128 + SIGPIPE);
  auto after = cli_->run({"exec", "pipes", "echo", "alive"});
  EXPECT_EQ(after.out, "alive\n") << after.err;
}

// log_max_bytes caps the container log (rotated once, to .1) and the console log (newest
// half kept, marked), while the reader still gets everything.
TEST_F(StreamTest, LogsAreCapped) {
  constexpr std::uint64_t kCap = 100000;
  const fs::path config = cli_->data_dir() / "capped.json";
  ASSERT_TRUE(write_file_atomic(config, R"({"log_max_bytes": )" + std::to_string(kCap) + "}").ok());
  auto r = cli_->run(run_args({"--name", "capped", FcvmCli::hello_image(), "sh", "-c",
                               "head -c 150000 /dev/zero | tr '\\0' c > /dev/console; "
                               "head -c 1000000 /dev/zero | tr '\\0' a"}),
                     RunOptions{{"FCVM_CONFIG=" + config.string()}, std::nullopt});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.size(), 1000000u);
  const fs::path dir = cli_->record("capped")["vm_dir"].get<std::string>();
  ASSERT_TRUE(fs::exists(dir / "container.log.1"));
  EXPECT_LE(fs::file_size(dir / "container.log"), kCap);
  EXPECT_LE(fs::file_size(dir / "container.log.1"), kCap);
  EXPECT_GT(fs::file_size(dir / "container.log"), 0u);
  EXPECT_LE(fs::file_size(dir / "console.log"), kCap);
  EXPECT_NE(read_file(dir / "console.log").value().find("older lines were dropped"), std::string::npos);
}

// -i: stdin streams to the process (more than one STDIN window) and its end arrives, for
// `podman run` from a pipe and from a file, and for `fcvm exec`.
TEST_F(StreamTest, InteractiveStdinReachesTheProcessWithItsEnd) {
  constexpr std::size_t kBytes = 1000000;
  const std::string input(kBytes, 'x');
  {
    Pipe in = make_pipe();
    Pipe out = make_pipe();
    ChildProcess run = spawn(run_args({"--rm", "-i", FcvmCli::hello_image(), "sh", "-c", "wc -c"}),
                             in.read.get(), out.write.get(), -1);
    in.read.reset();
    out.write.reset();
    std::thread feed([&] {
      for (std::size_t done = 0; done < input.size();) {
        const ssize_t n = ::write(in.write.get(), input.data() + done, input.size() - done);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
      }
      in.write.reset();
    });
    const std::string got = read_to_end(out.read.get());
    feed.join();
    EXPECT_EQ(got, std::to_string(kBytes) + "\n");
    auto st = run.wait();
    ASSERT_TRUE(st);
    EXPECT_EQ(st->code, 0);
  }
  const fs::path file = cli_->data_dir() / "input";
  ASSERT_TRUE(write_file_atomic(file, input).ok());
  UniqueFd in(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  Pipe out = make_pipe();
  start_idle_vm("stdin");
  for (const auto& args : {run_args({"--rm", "-i", FcvmCli::hello_image(), "sh", "-c", "wc -c"}),
                           std::vector<std::string>{"exec", "-i", "stdin", "sh", "-c", "wc -c"}}) {
    ::lseek(in.get(), 0, SEEK_SET);
    Pipe o = make_pipe();
    ChildProcess child = spawn(args, in.get(), o.write.get(), -1);
    o.write.reset();
    EXPECT_EQ(read_to_end(o.read.get()), std::to_string(kBytes) + "\n") << args[0];
    auto st = child.wait();
    ASSERT_TRUE(st);
    EXPECT_EQ(st->code, 0) << args[0];
  }
}

// -t under a host terminal: the process sees a guest terminal of the host's size, Ctrl-C
// typed on the host (raw mode) reaches it as the terminal's interrupt character (130),
// and the host terminal's settings are restored afterwards. Same for `fcvm exec -it`.
TEST_F(StreamTest, TerminalGetsSizeCtrlCAndIsRestored) {
  start_idle_vm("tty");
  // The guest's shell prints its terminal's size at start and on every SIGWINCH.
  const std::string script = "trap 'stty size' WINCH; tty; stty size; while :; do sleep 1; done";
  for (const auto& args : {run_args({"--rm", "-it", FcvmCli::hello_image(), "sh", "-c", script}),
                           std::vector<std::string>{"exec", "-it", "tty", "sh", "-c", script}}) {
    int master = -1, slave = -1;
    winsize ws{};
    ws.ws_row = 40;
    ws.ws_col = 123;
    ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, &ws), 0);
    UniqueFd m(master), s(slave);
    termios before{};
    ASSERT_EQ(::tcgetattr(s.get(), &before), 0);
    ChildProcess child = spawn(args, s.get(), s.get(), s.get(), {}, /*new_session=*/true);
    const std::string seen = read_until(m.get(), {"/dev/pts/", "40 123"});
    EXPECT_NE(seen.find("/dev/pts/"), std::string::npos) << args[0] << ": " << seen;
    EXPECT_NE(seen.find("40 123"), std::string::npos) << args[0] << ": " << seen;
    // Resizing our terminal resizes the guest's (SIGWINCH -> RESIZE -> TIOCSWINSZ). fcvm has
    // no controlling terminal here, so the test sends the SIGWINCH the kernel would.
    ws.ws_row = 50;
    ws.ws_col = 100;
    ASSERT_EQ(::ioctl(m.get(), TIOCSWINSZ, &ws), 0);
    ASSERT_TRUE(child.signal(SIGWINCH).ok());
    const std::string resized = read_until(m.get(), {"50 100"});
    EXPECT_NE(resized.find("50 100"), std::string::npos) << args[0] << ": " << resized;
    ASSERT_EQ(::write(m.get(), "\x03", 1), 1);
    // Drain what the host terminal shows until fcvm is gone.
    std::thread drain([&] { (void)read_to_end(m.get()); });
    auto st = child.wait();
    s.reset();
    drain.join();
    ASSERT_TRUE(st);
    EXPECT_EQ(st->code, 130) << args[0];
    termios after{};
    ASSERT_EQ(::tcgetattr(m.get(), &after), 0);
    EXPECT_EQ(after.c_lflag & (ICANON | ECHO | ISIG), before.c_lflag & (ICANON | ECHO | ISIG)) << args[0];
  }
}

}  // namespace
}  // namespace fcvm::test
