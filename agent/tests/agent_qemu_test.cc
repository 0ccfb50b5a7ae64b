// Boots fc-agent as PID 1 of a QEMU microvm (TCG) and drives it through AgentChannel:
// the main process, exec sessions, signals, shutdown, a malformed plan, overlay and direct
// roots on virtio-blk, and the network. Needs FCVM_TEST_KERNEL (an fcvm guest kernel),
// qemu-system-x86_64, busybox (static), cpio, gzip, mksquashfs and mkfs.ext4; skipped
// when any is missing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "agent/agent_channel.h"
#include "fcvm/unix_socket.h"
#include "session_log.h"
#include "test_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using agent::FrameType;
using Clock = std::chrono::steady_clock;

// Generous: ctest runs these VMs in parallel under TCG on small, busy machines.
constexpr auto kFrameTimeout = 30000ms;

std::map<std::uint32_t, agent_test::SessionLog> collect(AgentChannel& ch,
                                                        const std::vector<std::uint32_t>& sessions) {
  return agent_test::collect(ch, sessions, kFrameTimeout);
}

// The busybox applets the tests use, linked in /bin.
const char* kApplets[] = {"sh", "cat", "echo", "sleep", "ls", "hostname", "ifconfig", "mount",
                          "grep", "true", "id", "pwd", "sync", "env", "head", "wc", "touch"};

bool have_tool(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

void run(const std::string& cmd) {
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A root filesystem tree with busybox in /bin.
void make_busybox_tree(const fs::path& dir, const std::string& busybox) {
  fs::create_directories(dir / "bin");
  fs::copy_file(busybox, dir / "bin/busybox");
  for (const char* a : kApplets) fs::create_symlink("busybox", dir / "bin" / a);
}

struct Measurements {
  std::vector<double> hello_wall_ms, hello_uptime_ms, exec_round_trip_ms, stdout_mb_per_s;
};
Measurements g_measured;
std::set<std::string> g_boot_ids;  // of every VM booted in this process

class QemuVm {
 public:
  QemuVm(const fs::path& dir, const fs::path& kernel, const fs::path& initrd,
         const std::vector<std::string>& extra) : dir_(dir) {
    const auto sock = dir / "agent.sock";
    fs::remove(sock);
    std::vector<std::string> args = {
        "qemu-system-x86_64", "-M", "microvm", "-accel", "tcg", "-m", "256", "-nodefaults",
        "-no-user-config", "-nographic", "-no-reboot",
        "-serial", "file:" + (dir / "console.log").string(),
        "-kernel", kernel.string(), "-initrd", initrd.string(),
        // tsc_early_khz: TCG on a loaded host fails the kernel's TSC calibration otherwise.
        "-append", "console=ttyS0 quiet panic=-1 tsc_early_khz=2000000",
        "-device", "virtio-serial-device",
        "-chardev", "socket,id=ag,path=" + sock.string() + ",server=on,wait=off",
        "-device", "virtserialport,chardev=ag,name=" + std::string(agent::kPortName)};
    args.insert(args.end(), extra.begin(), extra.end());
    started_ = Clock::now();
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::freopen((dir / "qemu.log").c_str(), "w", stderr);
      ::freopen("/dev/null", "w", stdout);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    auto fd = connect_unix_socket(sock, Clock::now() + 10000ms);
    auto ch = fd ? AgentChannel::adopt(std::move(*fd)) : Result<AgentChannel>(fd.status());
    if (ch) channel_.emplace(std::move(*ch));
    else connect_error_ = ch.status().message();
  }
  ~QemuVm() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // Waits for HELLO and records the boot time.
  ::testing::AssertionResult boot() {
    if (!channel_) return ::testing::AssertionFailure() << connect_error_;
    auto hello = channel_->wait_hello(60000ms);
    if (!hello) {
      return ::testing::AssertionFailure() << hello.status().message() << "\nconsole:\n" << console();
    }
    g_measured.hello_wall_ms.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - started_).count());
    g_measured.hello_uptime_ms.push_back(static_cast<double>(hello->uptime_ms));
    // Every boot attaches, answers with the boot id its HELLO gave, and that id is new.
    auto attached = channel_->attach(1, hello->boot_id, kFrameTimeout);
    if (!attached) return ::testing::AssertionFailure() << attached.status().message();
    if (!g_boot_ids.insert(attached->boot_id).second) {
      return ::testing::AssertionFailure() << "boot id " << attached->boot_id << " seen on an earlier boot";
    }
    return ::testing::AssertionSuccess();
  }

  AgentChannel& channel() { return *channel_; }
  std::string console() const { return slurp(dir_ / "console.log") + slurp(dir_ / "qemu.log"); }

  // QEMU's exit status once the guest powered off, or -1 when it is still running.
  int wait_exit(std::chrono::milliseconds timeout = 30000ms) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

 private:
  fs::path dir_;
  pid_t pid_ = -1;
  Clock::time_point started_;
  std::optional<AgentChannel> channel_;
  std::string connect_error_;
};

class AgentQemu : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* kernel = std::getenv("FCVM_TEST_KERNEL");
    if (!kernel || !fs::exists(kernel)) {
      skip_ = "FCVM_TEST_KERNEL is not set to a guest kernel";
      return;
    }
    for (const char* tool : {"qemu-system-x86_64", "busybox", "cpio", "gzip", "mksquashfs", "mkfs.ext4"}) {
      if (!have_tool(tool)) {
        skip_ = std::string(tool) + " is not installed";
        return;
      }
    }
    kernel_ = kernel;
    busybox_ = fs::canonical(slurp_cmd("command -v busybox"));
    work_ = new agent::TestDir();
    // The initramfs: fc-agent as /init plus busybox, for root mode "initramfs".
    const auto root = work_->path() / "initramfs";
    make_busybox_tree(root, busybox_);
    fs::copy_file(FC_AGENT_BINARY, root / "init");
    for (const char* d : {"dev", "proc", "sys", "run", "tmp", "etc"}) fs::create_directories(root / d);
    initrd_ = work_->path() / "initrd.gz";
    run("cd '" + root.string() + "' && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1 > '" +
        initrd_.string() + "'");
  }
  static void TearDownTestSuite() {
    delete work_;
    work_ = nullptr;
    if (!g_measured.hello_wall_ms.empty()) {
      auto avg = [](const std::vector<double>& v) {
        double s = 0;
        for (double x : v) s += x;
        return v.empty() ? 0.0 : s / static_cast<double>(v.size());
      };
      std::printf("[ measured ] boot to HELLO: %.0f ms wall from QEMU start (n=%zu), guest uptime %.0f ms\n",
                  avg(g_measured.hello_wall_ms), g_measured.hello_wall_ms.size(),
                  avg(g_measured.hello_uptime_ms));
      if (!g_measured.exec_round_trip_ms.empty()) {
        std::printf("[ measured ] EXEC of /bin/true to EXIT: %.1f ms average (n=%zu)\n",
                    avg(g_measured.exec_round_trip_ms), g_measured.exec_round_trip_ms.size());
      }
      if (!g_measured.stdout_mb_per_s.empty()) {
        std::printf("[ measured ] exec stdout to the host: %.1f MB/s\n", avg(g_measured.stdout_mb_per_s));
      }
    }
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    dir_.emplace();
  }

  static std::string slurp_cmd(const std::string& cmd) {
    std::string out;
    if (FILE* f = ::popen(cmd.c_str(), "r")) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, f)) out += buf;
      ::pclose(f);
    }
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  QemuVm boot(const std::vector<std::string>& extra = {}) {
    return QemuVm(dir_->path(), kernel_, initrd_, extra);
  }

  static agent::Plan initramfs_plan(const std::string& script) {
    agent::Plan plan;
    plan.hostname = "guest1";
    plan.root.mode = agent::RootMode::kInitramfs;
    plan.process.args = {"sh", "-c", script};
    plan.process.env = {"PATH=/bin"};
    return plan;
  }

  static agent::Process shell(const std::string& script, bool stdin = false) {
    agent::Process p;
    p.args = {"sh", "-c", script};
    p.env = {"PATH=/bin"};
    p.stdin = stdin;
    return p;
  }

  static inline std::string skip_;
  static inline fs::path kernel_, busybox_, initrd_;
  static inline agent::TestDir* work_ = nullptr;
  std::optional<agent::TestDir> dir_;
};

TEST_F(AgentQemu, MainProcessOutputExitAndPowerOff) {
  QemuVm vm = boot();
  ASSERT_TRUE(vm.boot());
  ASSERT_TRUE(vm.channel().send_plan(initramfs_plan(
      "echo out; echo err >&2; hostname; cat /etc/hostname; grep guest1 /etc/hosts; "
      "echo pid=$$; ls /dev/console /dev/pts >/dev/null && echo devs; exit 42")).ok());
  auto logs = collect(vm.channel(), {0});
  EXPECT_TRUE(logs[0].started);
  EXPECT_EQ(logs[0].out, "out\nguest1\nguest1\n127.0.1.1\tguest1\npid=" +
                             std::to_string(logs[0].pid) + "\ndevs\n");
  EXPECT_EQ(logs[0].err, "err\n");
  ASSERT_TRUE(logs[0].exit);
  EXPECT_EQ(*logs[0].exit, (agent::Exit{42, 0}));
  EXPECT_EQ(vm.wait_exit(), 0) << vm.console();
  EXPECT_TRUE(vm.channel().next_frame(1000ms).status().code() == Errc::io);
}

TEST_F(AgentQemu, ExecSessionsStdinSignalsAndRoundTrip) {
  QemuVm vm = boot();
  ASSERT_TRUE(vm.boot());
  ASSERT_TRUE(vm.channel().send_plan(initramfs_plan("exec sleep 1000")).ok());
  auto started = vm.channel().next_frame(kFrameTimeout);
  ASSERT_TRUE(started);
  ASSERT_EQ(started->type, FrameType::kStarted);

  agent::Process t;
  t.args = {"true"};
  t.env = {"PATH=/bin"};
  for (std::uint32_t s = 1; s <= 10; ++s) {
    const auto t0 = Clock::now();
    ASSERT_TRUE(vm.channel().send_exec(s, t).ok());
    auto logs = collect(vm.channel(), {s});
    ASSERT_TRUE(logs[s].exit);
    EXPECT_EQ(logs[s].exit->code, 0);
    g_measured.exec_round_trip_ms.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }

  ASSERT_TRUE(vm.channel().send_exec(20, shell("read line; echo \"got $line\"; cat", true)).ok());
  ASSERT_TRUE(vm.channel().send_stdin(20, "first\nrest of it").ok());
  ASSERT_TRUE(vm.channel().send_stdin_eof(20).ok());
  auto s20 = collect(vm.channel(), {20});
  EXPECT_EQ(s20[20].out, "got first\nrest of it");
  EXPECT_EQ(s20[20].exit->code, 0);

  agent::Process missing;
  missing.args = {"no-such-tool"};
  missing.env = {"PATH=/bin:/usr/bin"};
  ASSERT_TRUE(vm.channel().send_exec(21, missing).ok());
  auto s21 = collect(vm.channel(), {21});
  ASSERT_EQ(s21[21].errors.size(), 1u);
  EXPECT_EQ(s21[21].errors[0],
            "cannot run 'no-such-tool': executable file not found in PATH (/bin:/usr/bin)");
  EXPECT_EQ(s21[21].exit->code, 127);

  agent::Process as_user = shell("id -u; id -g; id -G; pwd");
  as_user.uid = 1000;
  as_user.gid = 100;
  as_user.additional_gids = {10, 20};
  as_user.cwd = "/tmp";
  ASSERT_TRUE(vm.channel().send_exec(22, as_user).ok());
  auto s22 = collect(vm.channel(), {22});
  EXPECT_EQ(s22[22].out, "1000\n100\n100 10 20\n/tmp\n");

  const auto t0 = Clock::now();
  ASSERT_TRUE(vm.channel().send_exec(24, shell("head -c 8000000 /dev/zero")).ok());
  auto s24 = collect(vm.channel(), {24});
  EXPECT_EQ(s24[24].out.size(), 8000000u);
  g_measured.stdout_mb_per_s.push_back(
      8.0 / std::chrono::duration<double>(Clock::now() - t0).count());

  ASSERT_TRUE(vm.channel().send_exec(23, shell("exec sleep 1000")).ok());
  auto s23_started = vm.channel().next_frame(kFrameTimeout);
  ASSERT_TRUE(s23_started);
  EXPECT_EQ(s23_started->type, FrameType::kStarted);
  ASSERT_TRUE(vm.channel().send_signal(23, SIGKILL).ok());
  auto s23 = collect(vm.channel(), {23});
  EXPECT_EQ(*s23[23].exit, (agent::Exit{137, 9}));

  ASSERT_TRUE(vm.channel().send_signal(0, SIGTERM).ok());
  auto main = collect(vm.channel(), {0});
  EXPECT_EQ(*main[0].exit, (agent::Exit{143, 15}));
  EXPECT_EQ(vm.wait_exit(), 0) << vm.console();
}

TEST_F(AgentQemu, MalformedPlanReportsErrorAndPowersOff) {
  QemuVm vm = boot();
  ASSERT_TRUE(vm.boot());
  ASSERT_TRUE(vm.channel().send(FrameType::kPlan, 0,
                                R"({"protocol":2,"root":{"mode":"initramfs"},"process":{"args":"sh"}})").ok());
  auto f = vm.channel().next_frame(kFrameTimeout);
  ASSERT_TRUE(f) << f.status().message();
  EXPECT_EQ(f->type, FrameType::kError);
  EXPECT_NE(f->payload.find("plan.process.args: expected an array, got string"), std::string::npos)
      << f->payload;
  EXPECT_EQ(vm.wait_exit(), 0) << vm.console();
}

TEST_F(AgentQemu, MainProgramNotFoundPowersOff) {
  QemuVm vm = boot();
  ASSERT_TRUE(vm.boot());
  agent::Plan plan = initramfs_plan("");
  plan.process.args = {"/bin/nope"};
  plan.shutdown_on_exit = false;
  ASSERT_TRUE(vm.channel().send_plan(plan).ok());
  auto logs = collect(vm.channel(), {0});
  EXPECT_FALSE(logs[0].started);
  ASSERT_EQ(logs[0].errors.size(), 1u);
  EXPECT_EQ(logs[0].errors[0], "cannot run '/bin/nope': No such file or directory");
  EXPECT_EQ(logs[0].exit->code, 127);
  EXPECT_EQ(vm.wait_exit(), 0) << vm.console();
}

TEST_F(AgentQemu, ShutdownKillsWhatIgnoresSigterm) {
  QemuVm vm = boot();
  ASSERT_TRUE(vm.boot());
  agent::Plan plan = initramfs_plan("trap '' TERM; echo ready; while true; do sleep 1; done");
  plan.shutdown_on_exit = false;
  ASSERT_TRUE(vm.channel().send_plan(plan).ok());
  for (;;) {
    auto f = vm.channel().next_frame(kFrameTimeout);
    ASSERT_TRUE(f) << f.status().message();
    if (f->type == FrameType::kStdout) break;
  }
  ASSERT_TRUE(vm.channel().send_shutdown(500ms).ok());
  auto logs = collect(vm.channel(), {0});
  EXPECT_EQ(*logs[0].exit, (agent::Exit{137, 9}));
  EXPECT_EQ(vm.wait_exit(), 0) << vm.console();
}

TEST_F(AgentQemu, OverlayRootPersistsTheUpperLayer) {
  const auto rootfs = dir_->path() / "rootfs";
  make_busybox_tree(rootfs, busybox_);
  fs::create_directories(rootfs / "etc");
  std::ofstream(rootfs / "etc/motd") << "from the image\n";
  for (const char* d : {"dev", "proc", "sys", "run", "tmp"}) fs::create_directories(rootfs / d);
  const auto lower = dir_->path() / "root.sqfs";
  const auto upper = dir_->path() / "scratch.ext4";
  run("mksquashfs '" + rootfs.string() + "' '" + lower.string() + "' -noappend -quiet -all-root >/dev/null");
  run("truncate -s 32M '" + upper.string() + "' && mkfs.ext4 -q -F '" + upper.string() + "'");
  // Serials in the opposite order from the indexes: the agent must go by serial.
  const std::vector<std::string> disks = {
      "-drive", "id=d1,file=" + upper.string() + ",format=raw,if=none",
      "-device", "virtio-blk-device,drive=d1,serial=scratch",
      "-drive", "id=d0,file=" + lower.string() + ",format=raw,if=none,readonly=on",
      "-device", "virtio-blk-device,drive=d0,serial=root"};
  agent::Plan plan = initramfs_plan(
      "cat /etc/motd; cat /etc/hostname; echo kept > /persist; "
      "grep -c ' / overlay ' /proc/mounts; ls /dev/console >/dev/null && echo dev-ok; "
      "grep -q ' /proc proc' /proc/mounts && echo proc-ok");
  plan.root.mode = agent::RootMode::kOverlay;
  plan.root.lower = {"root", 0, "squashfs"};
  plan.root.upper = {"scratch", 1, "ext4"};
  {
    QemuVm vm = boot(disks);
    ASSERT_TRUE(vm.boot());
    ASSERT_TRUE(vm.channel().send_plan(plan).ok());
    auto logs = collect(vm.channel(), {0});
    EXPECT_EQ(logs[0].out, "from the image\nguest1\n1\ndev-ok\nproc-ok\n") << logs[0].err << vm.console();
    EXPECT_EQ(logs[0].exit->code, 0);
    EXPECT_EQ(vm.wait_exit(), 0) << vm.console();
    EXPECT_EQ(vm.console().find("remount"), std::string::npos) << vm.console();
  }
  // Powered off cleanly: the upper filesystem needs no journal replay.
  run("e2fsck -fn '" + upper.string() + "' >/dev/null 2>&1");
  {
    plan.process.args = {"sh", "-c", "cat /persist"};
    QemuVm vm = boot(disks);
    ASSERT_TRUE(vm.boot());
    ASSERT_TRUE(vm.channel().send_plan(plan).ok());
    auto logs = collect(vm.channel(), {0});
    EXPECT_EQ(logs[0].out, "kept\n") << logs[0].err;
    EXPECT_EQ(vm.wait_exit(), 0) << vm.console();
  }
}

TEST_F(AgentQemu, DirectRootByIndexWithoutSerial) {
  const auto rootfs = dir_->path() / "rootfs";
  make_busybox_tree(rootfs, busybox_);
  for (const char* d : {"dev", "proc", "sys", "run", "tmp", "etc"}) fs::create_directories(rootfs / d);
  const auto image = dir_->path() / "root.ext4";
  run("truncate -s 32M '" + image.string() + "' && mkfs.ext4 -q -F -d '" + rootfs.string() +
      "' '" + image.string() + "'");
  agent::Plan plan = initramfs_plan("grep ' / ext4' /proc/mounts | head -c 15; echo; cat /etc/hostname");
  plan.root.mode = agent::RootMode::kDirect;
  plan.root.drive = {"rootdisk", 0, "ext4"};  // no device has this serial: index 0 = vda
  QemuVm vm = boot({"-drive", "id=d0,file=" + image.string() + ",format=raw,if=none",
                    "-device", "virtio-blk-device,drive=d0"});
  ASSERT_TRUE(vm.boot());
  ASSERT_TRUE(vm.channel().send_plan(plan).ok());
  auto logs = collect(vm.channel(), {0});
  EXPECT_EQ(logs[0].out, "/dev/vda / ext4\nguest1\n") << logs[0].err << vm.console();
  EXPECT_EQ(vm.wait_exit(), 0) << vm.console();
  run("e2fsck -fn '" + image.string() + "' >/dev/null 2>&1");
}

TEST_F(AgentQemu, MissingDriveIsAPlanError) {
  QemuVm vm = boot();
  ASSERT_TRUE(vm.boot());
  agent::Plan plan = initramfs_plan("true");
  plan.root.mode = agent::RootMode::kDirect;
  plan.root.drive = {"root", 0, "ext4"};
  ASSERT_TRUE(vm.channel().send_plan(plan).ok());
  auto f = vm.channel().next_frame(kFrameTimeout);
  ASSERT_TRUE(f) << f.status().message();
  EXPECT_EQ(f->type, FrameType::kError);
  EXPECT_NE(f->payload.find("drive 'root': no virtio-blk device has that serial and /dev/vda"),
            std::string::npos) << f->payload;
  EXPECT_EQ(vm.wait_exit(), 0) << vm.console();
}

TEST_F(AgentQemu, ConfiguresTheNetwork) {
  agent::Plan plan = initramfs_plan(
      "ifconfig eth0 | grep -o 'inet addr:[0-9.]*'; ifconfig eth0 | grep -o 'MTU:[0-9]*'; "
      "grep -c '^eth0\t00000000\t0202000A' /proc/net/route; ifconfig lo | grep -o 'inet addr:[0-9.]*'; "
      "cat /etc/resolv.conf; grep guest1 /etc/hosts");
  plan.network = agent::Network{"02:fc:00:00:00:07", "10.0.2.15", 24, "10.0.2.2", {"10.0.2.3"}, 1400};
  QemuVm vm = boot({"-netdev", "user,id=n0", "-device",
                    "virtio-net-device,netdev=n0,mac=02:fc:00:00:00:07"});
  ASSERT_TRUE(vm.boot());
  ASSERT_TRUE(vm.channel().send_plan(plan).ok());
  auto logs = collect(vm.channel(), {0});
  EXPECT_EQ(logs[0].out,
            "inet addr:10.0.2.15\nMTU:1400\n1\ninet addr:127.0.0.1\nnameserver 10.0.2.3\n"
            "10.0.2.15\tguest1\n") << logs[0].err << vm.console();
  EXPECT_EQ(vm.wait_exit(), 0) << vm.console();
}

}  // namespace
}  // namespace fcvm
