// QemuBackend and QemuVm against real QEMU under TCG, booting a busybox initramfs.
#include "qemu_vm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include "qemu_backend.h"
#include "qemu_command_line.h"
#include "test_guest.h"
#include "fcvm/temp_dir.h"

namespace fcvm::qemu {
namespace {

using namespace std::chrono_literals;
using testing::TestGuest;
using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void measure(const std::string& what, double value, const std::string& unit) {
  std::cout << "[ measure  ] " << what << ": " << value << " " << unit << std::endl;
  ::testing::Test::RecordProperty(what, std::to_string(value) + " " + unit);
}

// Prints the plugin's log lines when FCVM_TEST_VERBOSE is set (timings are logged at info).
class PrintingLogger final : public Logger {
 public:
  explicit PrintingLogger(std::string tag) : tag_(std::move(tag)) {}
  void write(LogLevel, std::string_view message) const override {
    std::cout << "[ log      ] " << tag_ << message << std::endl;
  }
  bool enabled(LogLevel) const override { return true; }
  std::shared_ptr<const Logger> child(std::string_view tag) const override {
    return std::make_shared<PrintingLogger>(tag_ + std::string(tag) + ": ");
  }

 private:
  std::string tag_;
};

LoggerPtr test_logger() {
  const char* verbose = std::getenv("FCVM_TEST_VERBOSE");
  if (verbose == nullptr || *verbose == '\0') return null_logger();
  return std::make_shared<PrintingLogger>("vmm-qemu: ");
}

QemuConfig tcg_config() {
  QemuConfig c;
  c.accel = AccelMode::tcg;
  c.accel_source = "test";
  return c;
}

bool wait_exit(Vm& vm, std::chrono::milliseconds timeout) {
  pollfd p{vm.exit_fd(), POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

bool process_gone(pid_t pid, std::chrono::milliseconds timeout) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd p{fd, POLLIN, 0};
  const bool gone = ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
  ::close(fd);
  return gone;
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// FNV-1a over a whole file: enough to see whether a memory image changed.
std::uint64_t digest(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> buf(1 << 20);
  std::uint64_t h = 1469598103934665603ull;
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      h = (h ^ static_cast<unsigned char>(buf[static_cast<size_t>(i)])) * 1099511628211ull;
    }
  }
  return h;
}

std::uint64_t allocated_bytes(const std::filesystem::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_blocks) * 512 : 0;
}

bool has_counts(const std::string& console, size_t n) { return TestGuest::counts(console).size() >= n; }

class QemuVmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    kernel_ = TestGuest::kernel(&skip_reason_);
    if (!kernel_) return;
    auto g = TestGuest::create();
    if (!g.ok()) {
      skip_reason_ = "cannot build the test initramfs: " + g.status().message();
      kernel_.reset();
      return;
    }
    guest_ = new TestGuest(std::move(*g));
  }
  static void TearDownTestSuite() {
    delete guest_;
    guest_ = nullptr;
  }
  void SetUp() override {
    if (!kernel_) GTEST_SKIP() << skip_reason_;
  }

  VmSpec spec(const std::string& name, const std::string& mode) {
    return guest_->spec(name + "-" + std::to_string(++serial_), *kernel_, mode);
  }

  std::unique_ptr<Vm> launch(const VmSpec& s) {
    auto vm = backend_.launch(s);
    EXPECT_TRUE(vm.ok()) << vm.status().message();
    return vm.ok() ? std::move(*vm) : nullptr;
  }

  // Boots a counter guest and waits until it printed `n` counts.
  std::unique_ptr<Vm> counting_vm(VmSpec& s, size_t n = 3) {
    s = spec("counter", "counter");
    auto vm = launch(s);
    if (!vm) return nullptr;
    auto console = TestGuest::wait_for_file(s.console_log, [n](const std::string& c) { return has_counts(c, n); }, 60s);
    EXPECT_TRUE(console.has_value()) << "guest never counted; console:\n" << read_text(s.console_log)
                                     << "\nqemu.log:\n" << read_text(s.dir / "qemu.log");
    return console ? std::move(vm) : nullptr;
  }

  // Pauses `vm`, snapshots it into DIR/<name>/{state,mem} and returns the files.
  SnapshotFiles take_snapshot(Vm& vm, const std::string& name) {
    const auto dir = guest_->dir() / name;
    std::filesystem::create_directories(dir);
    SnapshotFiles files{dir / "state", dir / "mem"};
    EXPECT_TRUE(vm.pause().ok());
    const auto t0 = Clock::now();
    Status st = vm.snapshot(files);
    const auto t1 = Clock::now();
    EXPECT_TRUE(st.ok()) << st.message();
    measure("snapshot (pause excluded)", ms_between(t0, t1), "ms");
    measure("snapshot state file", static_cast<double>(std::filesystem::file_size(files.state)), "bytes");
    measure("snapshot memory image allocated", static_cast<double>(allocated_bytes(files.memory)) / 1048576.0, "MiB");
    return files;
  }

  RestoreSpec clone_spec(const SnapshotFiles& files, const std::string& name, bool resume = true) {
    RestoreSpec r;
    r.vm = spec(name, "ignored-on-restore");
    r.snapshot = files;
    r.memory = {MemorySourceKind::file, files.memory};
    r.resume = resume;
    return r;
  }

  static inline std::optional<std::filesystem::path> kernel_;
  static inline std::string skip_reason_;
  static inline TestGuest* guest_ = nullptr;
  int serial_ = 0;
  QemuBackend backend_{tcg_config(), test_logger()};
};

TEST_F(QemuVmTest, LaunchBootsAndShutsDown) {
  VmSpec s = spec("boot", "idle");
  const auto t0 = Clock::now();
  auto vm = launch(s);
  ASSERT_NE(vm, nullptr);
  const auto t_ready = Clock::now();
  measure("launch to QMP ready", ms_between(t0, t_ready), "ms");
  EXPECT_GT(vm->pid(), 0);
  EXPECT_FALSE(vm->exited().has_value());
  EXPECT_TRUE(std::filesystem::exists(QemuCommandLine::memory_file(s.dir)));

  auto console = TestGuest::wait_for_file(
      s.console_log, [](const std::string& c) { return c.find("FCVM-DISK vda data\r\n") != std::string::npos; },
      60s);
  ASSERT_TRUE(console.has_value()) << read_text(s.console_log) << read_text(s.dir / "qemu.log");
  measure("launch to /init output (wall)", ms_between(t0, Clock::now()), "ms");
  const auto up = console->find("FCVM-INIT uptime=");
  ASSERT_NE(up, std::string::npos);
  measure("guest uptime at /init", std::stod(console->substr(up + 17)) * 1000, "ms");
  EXPECT_TRUE(std::filesystem::exists(s.agent_socket));

  // This guest ignores the ACPI power button (its kernel has no evdev, its init no
  // handler), so shutdown() waits out the timeout and then has QEMU quit.
  const auto t_stop = Clock::now();
  ASSERT_TRUE(vm->shutdown(1s).ok());
  const double took = ms_between(t_stop, Clock::now());
  EXPECT_GE(took, 1000);
  auto status = vm->exited();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->signal, 0) << "QEMU should have quit cleanly, not been killed";
  EXPECT_TRUE(vm->shutdown(1s).ok()) << "idempotent";
  EXPECT_FALSE(std::filesystem::exists(QemuCommandLine::memory_file(s.dir)));
}

// The nlink guard at both places vmm-qemu writes a mem-file: QEMU's share=on RAM file at
// launch, and the snapshot's image. Neither may change bytes another name can see.
TEST_F(QemuVmTest, MemoryFilesSharedWithOtherNamesAreNeverWritten) {
  VmSpec s = spec("shared-mem", "counter");
  std::filesystem::create_directories(s.dir);
  const auto mem = QemuCommandLine::memory_file(s.dir);
  const auto other = guest_->dir() / ("other-name-of-mem-" + std::to_string(serial_));
  std::ofstream(mem, std::ios::binary) << std::string(1 << 20, '\x5a');
  ASSERT_EQ(::link(mem.c_str(), other.c_str()), 0);
  struct stat shared {};
  ASSERT_EQ(::stat(other.c_str(), &shared), 0);
  const auto other_digest = digest(other);

  auto vm = launch(s);
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(TestGuest::wait_for_file(s.console_log, [](const std::string& c) { return has_counts(c, 2); }, 60s))
      << read_text(s.dir / "qemu.log");
  struct stat running {};
  ASSERT_EQ(::stat(mem.c_str(), &running), 0);
  EXPECT_NE(running.st_ino, shared.st_ino) << "QEMU maps the shared inode";

  // A snapshot written over a name that forks share replaces that name only.
  const auto snap_dir = guest_->dir() / ("snap-shared-" + std::to_string(serial_));
  std::filesystem::create_directories(snap_dir);
  const SnapshotFiles files{snap_dir / "state", snap_dir / "mem"};
  ASSERT_EQ(::link(other.c_str(), files.memory.c_str()), 0);
  ASSERT_TRUE(vm->pause().ok());
  Status st = vm->snapshot(files);
  ASSERT_TRUE(st.ok()) << st.message();
  vm->kill();

  struct stat after {};
  ASSERT_EQ(::stat(other.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, shared.st_ino);
  EXPECT_EQ(after.st_nlink, 1u) << "both other names were given their own inodes";
  EXPECT_EQ(digest(other), other_digest) << "a write reached another name of the mem-file";
  EXPECT_NE(digest(files.memory), other_digest);
}

TEST_F(QemuVmTest, GuestPowerOffEndsQemu) {
  VmSpec s = spec("poweroff", "poweroff");
  auto vm = launch(s);
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(wait_exit(*vm, 60s)) << read_text(s.console_log);
  auto status = vm->exited();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->success()) << "code " << status->code << " signal " << status->signal;
}

TEST_F(QemuVmTest, GuestRebootEndsQemu) {
  VmSpec s = spec("reboot", "reboot");
  auto vm = launch(s);
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(wait_exit(*vm, 60s)) << read_text(s.console_log);
  auto status = vm->exited();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->signal, 0);
}

TEST_F(QemuVmTest, PauseStopsTheGuestAndResumeContinuesIt) {
  VmSpec s;
  auto vm = counting_vm(s, 2);
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(vm->pause().ok());
  ASSERT_TRUE(vm->pause().ok()) << "idempotent";
  // QMP "stop" answers once every vCPU has stopped, and the console is a file chardev the
  // vCPU writes synchronously: what the guest printed is in the file now.
  const size_t paused_at = TestGuest::counts(read_text(s.console_log)).size();
  // Not a synchronisation: the window in which a running guest would print five lines.
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(TestGuest::counts(read_text(s.console_log)).size(), paused_at) << "a paused guest counted";
  ASSERT_TRUE(vm->resume().ok());
  ASSERT_TRUE(vm->resume().ok()) << "idempotent";
  EXPECT_TRUE(TestGuest::wait_for_file(
      s.console_log, [paused_at](const std::string& c) { return has_counts(c, paused_at + 2); }, 30s));
}

TEST_F(QemuVmTest, ShutdownOfAPausedVmQuitsAtOnce) {
  VmSpec s;
  auto vm = counting_vm(s, 1);
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(vm->pause().ok());
  // A paused guest cannot power off: shutdown must not wait for it. Were it to wait, this
  // test would outlive ctest's timeout and fail there.
  ASSERT_TRUE(vm->shutdown(std::chrono::hours(24)).ok());
  auto status = vm->exited();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->signal, 0);
  EXPECT_FALSE(vm->pause().ok()) << "QEMU is gone";
}

TEST_F(QemuVmTest, KilledVmReportsItsExit) {
  VmSpec s = spec("killed", "idle");
  auto vm = launch(s);
  ASSERT_NE(vm, nullptr);
  const pid_t pid = vm->pid();
  ::kill(pid, SIGKILL);
  ASSERT_TRUE(wait_exit(*vm, 5s));
  auto status = vm->exited();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->signal, SIGKILL);
  Status st = vm->pause();
  EXPECT_EQ(st.code(), Errc::unavailable);
  EXPECT_NE(st.message().find("QEMU exited (killed by signal 9"), std::string::npos) << st.message();
  vm->kill();
  vm->kill();
  EXPECT_FALSE(std::filesystem::exists(QemuCommandLine::memory_file(s.dir)));
}

TEST_F(QemuVmTest, SnapshotNeedsAPausedVm) {
  VmSpec s;
  auto vm = counting_vm(s, 1);
  ASSERT_NE(vm, nullptr);
  const auto dir = guest_->dir() / "snap-running";
  std::filesystem::create_directories(dir);
  Status st = vm->snapshot({dir / "state", dir / "mem"});
  EXPECT_EQ(st.code(), Errc::invalid_argument) << st.message();
  EXPECT_FALSE(std::filesystem::exists(dir / "state"));
  EXPECT_FALSE(std::filesystem::exists(dir / "mem"));
}

TEST_F(QemuVmTest, RestoredGuestContinuesWhereTheSourceStopped) {
  VmSpec s;
  auto source = counting_vm(s, 5);
  ASSERT_NE(source, nullptr);
  const SnapshotFiles files = take_snapshot(*source, "snap-continue");
  source->kill();
  const auto source_counts = TestGuest::counts(read_text(s.console_log));
  ASSERT_FALSE(source_counts.empty());
  const long last = source_counts.back();
  const auto image_digest = digest(files.memory);

  // Two clones of one snapshot, each with its own directory, console and disk.
  std::vector<std::unique_ptr<Vm>> clones;
  std::vector<RestoreSpec> specs;
  for (int i = 0; i < 2; ++i) {
    specs.push_back(clone_spec(files, "clone"));
    const auto t0 = Clock::now();
    auto vm = backend_.restore(specs.back());
    const auto t1 = Clock::now();
    ASSERT_TRUE(vm.ok()) << vm.status().message() << "\n" << read_text(specs.back().vm.dir / "qemu.log");
    measure("restore() to running (QEMU start + load + cont)", ms_between(t0, t1), "ms");
    auto console = TestGuest::wait_for_file(
        specs.back().vm.console_log, [](const std::string& c) { return has_counts(c, 1); }, 30s);
    ASSERT_TRUE(console.has_value()) << read_text(specs.back().vm.dir / "qemu.log");
    measure("restore() to first guest output", ms_between(t0, Clock::now()), "ms");
    clones.push_back(std::move(*vm));
  }
  for (const auto& r : specs) {
    auto console = TestGuest::wait_for_file(r.vm.console_log, [](const std::string& c) { return has_counts(c, 3); }, 30s);
    ASSERT_TRUE(console.has_value());
    const auto counts = TestGuest::counts(*console);
    EXPECT_GT(counts.front(), last) << "the clone restarted instead of continuing";
    EXPECT_LE(counts.front(), last + 2) << "the clone skipped ahead";
    for (size_t i = 1; i < counts.size(); ++i) EXPECT_EQ(counts[i], counts[i - 1] + 1);
  }
  for (auto& vm : clones) {
    vm->kill();
    EXPECT_TRUE(vm->exited().has_value());
  }
  EXPECT_EQ(digest(files.memory), image_digest) << "a clone wrote through to the template image";
  EXPECT_TRUE(std::filesystem::exists(files.memory)) << "teardown must not remove the template";
}

TEST_F(QemuVmTest, SourceResumesAfterSnapshotWithoutTouchingIt) {
  VmSpec s;
  auto source = counting_vm(s, 2);
  ASSERT_NE(source, nullptr);
  const SnapshotFiles files = take_snapshot(*source, "snap-resume");
  const auto image_digest = digest(files.memory);
  const size_t before = TestGuest::counts(read_text(s.console_log)).size();
  ASSERT_TRUE(source->resume().ok());
  EXPECT_TRUE(TestGuest::wait_for_file(
      s.console_log, [before](const std::string& c) { return has_counts(c, before + 3); }, 30s));
  EXPECT_EQ(digest(files.memory), image_digest) << "the resumed source wrote into the snapshot";
  // A second snapshot of the same VM works too.
  const SnapshotFiles again = take_snapshot(*source, "snap-resume-2");
  EXPECT_TRUE(std::filesystem::exists(again.state));
}

TEST_F(QemuVmTest, RestoreCanStayPaused) {
  VmSpec s;
  auto source = counting_vm(s, 2);
  ASSERT_NE(source, nullptr);
  const SnapshotFiles files = take_snapshot(*source, "snap-paused");
  source->kill();
  RestoreSpec r = clone_spec(files, "paused-clone", /*resume=*/false);
  auto vm = backend_.restore(r);
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  auto* qemu_vm = dynamic_cast<QemuVm*>(vm->get());
  ASSERT_NE(qemu_vm, nullptr);
  auto state = qemu_vm->run_state();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(*state, "paused");
  // Not a synchronisation: the window in which a running clone would print three lines.
  std::this_thread::sleep_for(600ms);
  EXPECT_TRUE(TestGuest::counts(read_text(r.vm.console_log)).empty());
  ASSERT_TRUE((*vm)->resume().ok());
  EXPECT_TRUE(TestGuest::wait_for_file(r.vm.console_log, [](const std::string& c) { return has_counts(c, 2); }, 30s));
  // A restored VM's RAM is a private mapping of the template: it cannot be snapshotted.
  ASSERT_TRUE((*vm)->pause().ok());
  const auto dir = guest_->dir() / "snap-of-clone";
  std::filesystem::create_directories(dir);
  EXPECT_EQ((*vm)->snapshot({dir / "state", dir / "mem"}).code(), Errc::unavailable);
}

// A snapshottable restore runs on its own copy of the image: it can be snapshotted, the
// template is untouched, and a clone of that second snapshot continues from it.
TEST_F(QemuVmTest, ASnapshottableRestoreCanBeSnapshottedAndCloned) {
  VmSpec s;
  auto source = counting_vm(s, 2);
  ASSERT_NE(source, nullptr);
  const SnapshotFiles files = take_snapshot(*source, "snap-first");
  source->kill();
  const auto image_digest = digest(files.memory);
  RestoreSpec r = clone_spec(files, "own-memory");
  r.snapshottable = true;
  auto vm = backend_.restore(r);
  ASSERT_TRUE(vm.ok()) << vm.status().message() << "\n" << read_text(r.vm.dir / "qemu.log");
  auto console = TestGuest::wait_for_file(r.vm.console_log, [](const std::string& c) { return has_counts(c, 2); }, 30s);
  ASSERT_TRUE(console.has_value()) << read_text(r.vm.dir / "qemu.log");
  const SnapshotFiles second = take_snapshot(**vm, "snap-second");
  ASSERT_TRUE(std::filesystem::exists(second.memory));
  const long last = TestGuest::counts(read_text(r.vm.console_log)).back();
  const auto own = r.vm.dir / "mem";
  EXPECT_TRUE(std::filesystem::exists(own));
  (*vm)->kill();
  vm->reset();
  EXPECT_FALSE(std::filesystem::exists(own)) << "the VM's own RAM file goes with it";
  EXPECT_EQ(digest(files.memory), image_digest) << "the restore wrote into the template";

  RestoreSpec again = clone_spec(second, "clone-of-restore");
  auto clone = backend_.restore(again);
  ASSERT_TRUE(clone.ok()) << clone.status().message();
  auto counts = TestGuest::wait_for_file(again.vm.console_log, [](const std::string& c) { return has_counts(c, 1); }, 30s);
  ASSERT_TRUE(counts.has_value());
  EXPECT_GT(TestGuest::counts(*counts).front(), last) << "the clone did not continue the restored VM";
}

TEST_F(QemuVmTest, ParentDeathTakesQemuDown) {
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  VmSpec s = spec("orphan", "idle");
  const pid_t helper = ::fork();
  ASSERT_GE(helper, 0);
  if (helper == 0) {
    ::close(pipefd[0]);
    QemuBackend backend(tcg_config(), null_logger());
    auto vm = backend.launch(s);
    const pid_t qemu = vm.ok() ? (*vm)->pid() : -1;
    (void)!::write(pipefd[1], &qemu, sizeof qemu);
    for (;;) ::pause();
  }
  ::close(pipefd[1]);
  pid_t qemu = -1;
  ASSERT_EQ(::read(pipefd[0], &qemu, sizeof qemu), static_cast<ssize_t>(sizeof qemu));
  ::close(pipefd[0]);
  ASSERT_GT(qemu, 0) << "the helper could not launch QEMU";
  EXPECT_FALSE(process_gone(qemu, 0ms));
  ::kill(helper, SIGKILL);
  ::waitpid(helper, nullptr, 0);
  EXPECT_TRUE(process_gone(qemu, 5s)) << "QEMU outlived the process that launched it";
}

// Failures that need no guest kernel.
class QemuBackendFailureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create("fcvm-qemu-fail-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    tmp_dir_ = std::move(*made);
    dir_ = tmp_dir_.path();
    std::ofstream(dir_ / "not-a-kernel") << "this is not a kernel\n";
    spec_.name = "bad";
    spec_.dir = dir_ / "vm";
    spec_.memory_mib = 64;
    spec_.kernel = dir_ / "not-a-kernel";
    spec_.cmdline = "console=ttyS0";
    spec_.console_log = spec_.dir / "console.log";
  }
  TempDir tmp_dir_;
  std::filesystem::path dir_;
  VmSpec spec_;
};

TEST_F(QemuBackendFailureTest, QemuErrorIsReportedAndNothingRuns) {
  QemuBackend backend(tcg_config(), null_logger());
  auto vm = backend.launch(spec_);
  ASSERT_FALSE(vm.ok());
  const std::string m = vm.status().message();
  EXPECT_NE(m.find("vmm-qemu: VM bad: QEMU exited (exit code 1)"), std::string::npos) << m;
  EXPECT_NE(m.find("kernel"), std::string::npos) << "QEMU's own complaint is quoted: " << m;
  EXPECT_FALSE(std::filesystem::exists(spec_.dir / "mem"));
}

TEST_F(QemuBackendFailureTest, MissingInputsAreNamed) {
  QemuBackend backend(tcg_config(), null_logger());
  VmSpec s = spec_;
  s.kernel = dir_ / "absent";
  auto vm = backend.launch(s);
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(vm.status().code(), Errc::not_found);
  EXPECT_NE(vm.status().message().find("kernel " + s.kernel.string() + " not found"), std::string::npos);
  s = spec_;
  s.drives = {{"root", dir_ / "no-disk", true}};
  vm = backend.launch(s);
  ASSERT_FALSE(vm.ok());
  EXPECT_NE(vm.status().message().find("no-disk"), std::string::npos) << vm.status().message();
}

TEST_F(QemuBackendFailureTest, MissingBinarySaysHowToInstall) {
  QemuConfig c = tcg_config();
  c.binary = "qemu-system-x86_64-not-installed";
  QemuBackend backend(c, null_logger());
  auto vm = backend.launch(spec_);
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(vm.status().code(), Errc::unavailable);
  EXPECT_NE(vm.status().message().find("apt-get install qemu-system-x86"), std::string::npos)
      << vm.status().message();
  const Probe p = backend.probe();
  EXPECT_FALSE(p.available);
  EXPECT_NE(p.reason.find("apt-get install qemu-system-x86"), std::string::npos) << p.reason;
}

TEST_F(QemuBackendFailureTest, ProbeNamesVersionAndAccelerator) {
  QemuBackend backend(QemuConfig{}, null_logger());
  const Probe p = backend.probe();
  ASSERT_TRUE(p.available) << p.reason;
  EXPECT_NE(p.reason.find("qemu-system-x86_64 "), std::string::npos) << p.reason;
  const KvmHost host = KvmHost::detect();
  if (host.kvm_pvm && !host.kvm_intel && !host.kvm_amd) {
    EXPECT_NE(p.reason.find("tcg: /dev/kvm is PVM-backed (kvm_pvm loaded, no kvm_intel/kvm_amd)"),
              std::string::npos) << p.reason;
  }
}

TEST_F(QemuBackendFailureTest, RestoreRefusesAMissingShimAndForeignState) {
  QemuConfig config = tcg_config();
  config.uffd_shim = (dir_ / "no-such-shim.so").string();
  QemuBackend backend(config, null_logger());
  RestoreSpec r;
  r.vm = spec_;
  r.snapshot = {dir_ / "state", dir_ / "mem"};
  r.memory = {MemorySourceKind::uffd, dir_ / "pager.sock"};
  auto vm = backend.restore(r);
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(vm.status().code(), Errc::unavailable);
  EXPECT_NE(vm.status().message().find("no-such-shim.so"), std::string::npos) << vm.status().message();

  std::ofstream(dir_ / "state") << "QEVM not ours";
  r.memory = {MemorySourceKind::file, dir_ / "mem"};
  vm = backend.restore(r);
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(vm.status().code(), Errc::invalid_argument);
  EXPECT_NE(vm.status().message().find("not a vmm-qemu snapshot state file"), std::string::npos);
}

TEST_F(QemuBackendFailureTest, RestoreRefusesShortMemoryImage) {
  QemuBackend backend(tcg_config(), null_logger());
  auto header = StateFileHeader::from_spec(spec_, "console=ttyS0", "tcg");
  std::ofstream(dir_ / "state") << header.encode() << "QEVM";
  std::ofstream(dir_ / "mem") << "tiny";
  RestoreSpec r;
  r.vm = spec_;
  r.snapshot = {dir_ / "state", dir_ / "mem"};
  r.memory = {MemorySourceKind::file, dir_ / "mem"};
  auto vm = backend.restore(r);
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(vm.status().code(), Errc::invalid_argument);
  EXPECT_NE(vm.status().message().find("64 MiB"), std::string::npos) << vm.status().message();
}

}  // namespace
}  // namespace fcvm::qemu
