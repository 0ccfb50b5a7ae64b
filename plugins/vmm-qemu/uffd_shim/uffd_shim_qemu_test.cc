// Real QEMU (TCG) clones served by the memory-uffd page server through fcvm-uffd-shim,
// driven directly over QMP (no fcvm snapshot commands): a source guest fills 16 MiB of
// tmpfs with random bytes and prints a random boot id, a tick counter and the bytes' md5 in a
// loop; it is snapshotted with x-ignore-shared (RAM stays in its mem-file); clones on
// memory-backend-ram get every page from the page server and must continue the source's
// ticks with the source's boot id and checksum, never boot afresh.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <functional>
#include <fstream>
#include <gtest/gtest.h>
#include <regex>
#include <sstream>
#include <thread>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "host_tsc.h"
#include "qmp_client.h"
#include "stderr_logger.h"
#include "uffd_page_server.h"

namespace fcvm::uffd {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::uint64_t kRamBytes = 128ull << 20;

constexpr const char* kInit = R"(#!/bin/busybox sh
/bin/busybox mkdir -p /proc /tmp /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t tmpfs tmp /tmp
boot=$(/bin/busybox head -c 16 /dev/urandom | /bin/busybox md5sum)
boot=${boot%% *}
/bin/busybox dd if=/dev/urandom of=/tmp/blob bs=1M count=16 2>/dev/null
echo "UFFD-BOOT $boot"
i=0
while :; do
  i=$((i+1))
  sum=$(/bin/busybox md5sum /tmp/blob)
  echo "UFFD-TICK $i $boot ${sum%% *}"
done
)";

struct Tick {
  long n;
  std::string boot, sum;
};

std::vector<Tick> ticks(const fs::path& console) {
  std::ifstream in(console);
  std::vector<Tick> out;
  static const std::regex re(R"(UFFD-TICK (\d+) (\S+) ([0-9a-f]{32})\r?)");
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, re)) out.push_back({std::stol(m[1]), m[2], m[3]});
  }
  return out;
}

std::string slurp(const fs::path& p) {
  auto s = read_file(p);
  return s ? *s : std::string();
}

// Runs the page server's loop on its own thread between start() and stop(); the server is
// touched by one thread at a time (expect_client is called while the loop is stopped).
class ServerThread {
 public:
  explicit ServerThread(UffdPageServer& s) : server_(s) {}
  ~ServerThread() { stop(); }
  void start() {
    run_ = true;
    thread_ = std::thread([this] {
      while (run_) {
        pollfd p{server_.fd(), POLLIN, 0};
        ::poll(&p, 1, 20);
        (void)server_.dispatch();
      }
    });
  }
  void stop() {
    run_ = false;
    if (thread_.joinable()) thread_.join();
  }

 private:
  UffdPageServer& server_;
  std::atomic<bool> run_{false};
  std::thread thread_;
};

// True when some thread of `pid` sleeps in the userfaultfd fault path.
bool waits_on_fault(pid_t pid) {
  std::error_code ec;
  for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    if (slurp(t.path() / "wchan") == "handle_userfault") return true;
  }
  return false;
}

// One source VM, snapshotted once for all tests of the suite (TCG is slow).
class UffdShimQemuTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* kernel = std::getenv("FCVM_TEST_KERNEL");
    if (!kernel || !fs::exists(kernel)) {
      skip_ = "FCVM_TEST_KERNEL is not set (scripts/test sets it)";
    } else if (::geteuid() != 0) {
      skip_ = "needs root for userfaultfd in QEMU and pidfd_getfd";
    } else if (::access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
      skip_ = "qemu-system-x86_64 is not installed";
    } else if (::access("/usr/bin/busybox", X_OK) != 0) {
      skip_ = "busybox-static is not installed";
    }
    if (!skip_.empty()) return;
    kernel_ = kernel;
    std::string tmpl = (fs::temp_directory_path() / "fcvm-uffd-qemu.XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      failure_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    failure_ = make_snapshot();
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_EQ(failure_, "") << slurp(dir_ / "source.log");
  }
  void TearDown() override { vms_.clear(); }

  // Boots the source, waits for two ticks, snapshots it (x-ignore-shared) and kills it.
  // Returns "" or what failed.
  static std::string make_snapshot() {
    fs::create_directories(dir_ / "root/bin");
    fs::copy_file("/usr/bin/busybox", dir_ / "root/bin/busybox");
    if (!write_file_atomic(dir_ / "root/init", kInit, 0755).ok()) return "cannot write /init";
    SpawnOptions o;
    o.argv = {"sh", "-c", "cd root && find . | cpio -o -H newc 2>/dev/null | gzip -1 > ../initrd.gz"};
    o.cwd = dir_;
    auto cpio = ChildProcess::spawn(o);
    if (!cpio.ok() || !cpio->wait()->success()) return "cannot build the initramfs";
    std::deque<ChildProcess> vms;
    // RAM in a shared file, so x-ignore-shared keeps it out of the state stream.
    auto& source = spawn(vms, qemu_argv("source", "memory-backend-file,id=mem,size=128M,mem-path=" +
                                                       (dir_ / "mem").string() + ",share=on"));
    if (wait_ticks("source", source, 2).size() < 2) return "the source guest printed no ticks";
    auto q = qmp("source", source);
    if (!q.connected() || !q.execute("stop").ok() ||
        !q.execute("migrate-set-capabilities", ignore_shared()).ok() ||
        !q.execute("migrate", {{"uri", "exec:cat > " + (dir_ / "state").string()}}).ok()) {
      return "QMP snapshot of the source failed";
    }
    if (!wait_migration(q)) return "the source's migration failed";
    source.kill();  // the template memory must never change again
    last_ = ticks(dir_ / "source.log").back();
    if (fs::file_size(dir_ / "state") > (1u << 20)) return "guest RAM went into the state file";
    return "";
  }

  static std::vector<std::string> qemu_argv(const std::string& name, const std::string& memory_object) {
    // Under TCG the guest cannot calibrate the TSC on microvm when the host is busy.
    std::string append = "console=ttyS0 quiet panic=-1";
    if (const unsigned khz = qemu::HostTsc::khz()) append += " tsc_early_khz=" + std::to_string(khz) + " tsc=reliable";
    return {"qemu-system-x86_64", "-M", "microvm,memory-backend=mem", "-accel", "tcg", "-m", "128M",
            "-object", memory_object, "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "file:" + (dir_ / (name + ".log")).string(), "-kernel", kernel_.string(),
            "-initrd", (dir_ / "initrd.gz").string(), "-append", append,
            "-qmp", "unix:" + (dir_ / (name + ".qmp")).string() + ",server=on,wait=off", "-no-reboot"};
  }

  static ChildProcess& spawn(std::deque<ChildProcess>& into, std::vector<std::string> argv,
                             std::vector<std::string> env = {}, int stdout_fd = -1) {
    SpawnOptions o;
    o.argv = std::move(argv);
    o.env_add = std::move(env);
    o.stdout_fd = stdout_fd;
    o.stderr_fd = 2;
    auto child = ChildProcess::spawn(o);
    EXPECT_TRUE(child.ok()) << child.status().message();
    into.push_back(child.ok() ? std::move(*child) : ChildProcess());
    return into.back();
  }

  static qemu::QmpClient qmp(const std::string& name, ChildProcess& vm) {
    for (;;) {
      auto c = qemu::QmpClient::connect(dir_ / (name + ".qmp"), 10s);
      if (c.ok()) return std::move(*c);
      if (vm.try_wait()) return {};
      ::usleep(20000);
    }
  }

  static bool wait_migration(qemu::QmpClient& q) {
    for (;;) {
      auto r = q.execute("query-migrate", nullptr, 60s);
      if (!r.ok()) return false;
      const std::string status = r->value("status", "");
      if (status == "completed") return true;
      if (status == "failed") return false;
      ::usleep(20000);
    }
  }

  // Polls the console until `n` ticks are there (or the VM died).
  static std::vector<Tick> wait_ticks(const std::string& name, ChildProcess& vm, std::size_t n) {
    for (;;) {
      auto t = ticks(dir_ / (name + ".log"));
      if (t.size() >= n || vm.try_wait()) return t;
      ::usleep(50000);
    }
  }

  static nlohmann::json ignore_shared() {
    return {{"capabilities", {{{"capability", "x-ignore-shared"}, {"state", true}}}}};
  }

  // Starts clone `name` with the shim pointed at `socket`; `before_restore` runs once its
  // pid is known (to announce it to a server). Restores it over QMP and resumes it.
  ChildProcess& restore_clone(const std::string& name, const fs::path& socket,
                              const std::function<void(pid_t)>& before_restore) {
    auto argv = qemu_argv(name, "memory-backend-ram,id=mem,size=128M");
    argv.insert(argv.end(), {"-incoming", "defer"});
    auto& vm = spawn(vms_, argv, {"LD_PRELOAD=" FCVM_UFFD_SHIM, "FCVM_UFFD_MEM_SIZE=" + std::to_string(kRamBytes),
                                  "FCVM_UFFD_SOCKET=" + socket.string()});
    before_restore(vm.pid());
    auto q = qmp(name, vm);
    EXPECT_TRUE(q.execute("migrate-set-capabilities", ignore_shared()).ok());
    auto incoming = q.execute("migrate-incoming", {{"uri", "exec:cat " + (dir_ / "state").string()}});
    EXPECT_TRUE(incoming.ok()) << incoming.status().message();
    EXPECT_TRUE(wait_migration(q));
    EXPECT_TRUE(q.execute("cont").ok());
    return vm;
  }

  // The clone continues the source: no fresh boot, the source's boot id and checksum.
  static void expect_continues(const std::string& name, const std::vector<Tick>& t) {
    ASSERT_GE(t.size(), 2u) << slurp(dir_ / (name + ".log"));
    EXPECT_EQ(slurp(dir_ / (name + ".log")).find("UFFD-BOOT"), std::string::npos) << name << " booted afresh";
    for (const auto& tick : t) {
      EXPECT_EQ(tick.boot, last_.boot) << name;
      EXPECT_EQ(tick.sum, last_.sum) << name << " tick " << tick.n << ": the guest's 16 MiB came back wrong";
      EXPECT_GE(tick.n, last_.n) << name << " continues from the snapshot, not from 1";
    }
  }

  MemoryServeOptions serve_options(const std::string& tag) const {
    MemoryServeOptions options;
    options.memory_image = dir_ / "mem";
    options.socket = dir_ / (tag + ".sock");
    options.state_dir = dir_ / (tag + "-state");
    options.snapshot_dir = dir_ / (tag + "-snapshot");
    fs::create_directories(options.snapshot_dir);
    return options;
  }

  static inline std::string skip_, failure_;
  static inline fs::path dir_, kernel_;
  static inline Tick last_;
  std::deque<ChildProcess> vms_;
};

TEST_F(UffdShimQemuTest, ClonesContinueTheSourceFromThePageServer) {
  const auto options = serve_options("clones");
  auto server = UffdPageServer::start(options, std::make_shared<testing::StderrLogger>("page-server"));
  ASSERT_TRUE(server.ok()) << server.status().message();
  ServerThread loop(**server);
  auto announce = [&](pid_t pid) {
    loop.stop();
    (*server)->expect_client(pid);
    loop.start();
  };

  // Clone 1 records the working set; clone 2 gets it pushed and takes fewer faults.
  auto& first = restore_clone("clone1", options.socket, announce);
  const pid_t first_pid = first.pid();
  expect_continues("clone1", wait_ticks("clone1", first, 2));
  first.kill();
  auto& second = restore_clone("clone2", options.socket, announce);
  const pid_t second_pid = second.pid();
  expect_continues("clone2", wait_ticks("clone2", second, 2));
  second.kill();
  loop.stop();
  while (!(*server)->clients().empty()) {
    pollfd p{(*server)->fd(), POLLIN, 0};
    ::poll(&p, 1, 20);
    ASSERT_TRUE((*server)->dispatch().ok());
  }
  MemoryClientStats a, b;
  for (const auto& s : (*server)->stats()) {
    if (s.pid == first_pid) a = s;
    if (s.pid == second_pid) b = s;
  }
  std::cerr << "clone1: " << a.to_json().dump() << "\nclone2: " << b.to_json().dump() << "\n";
  EXPECT_GT(a.faults, 100u);
  EXPECT_EQ(a.prefetched_pages, 0u);
  EXPECT_GT(b.prefetched_pages, 0u);
  EXPECT_LT(b.faults, a.faults);
}

// kill -9 of the serving process while the clone waits on a fault; a new server adopts
// the clone (pidfd_getfd of QEMU's uffd, regions from the record) and the guest goes on.
TEST_F(UffdShimQemuTest, RestartedServerAdoptsARunningClone) {
  auto options = serve_options("adopt");
  options.prefetch = false;
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  UniqueFd out_read(out[0]), out_write(out[1]);
  std::deque<ChildProcess> servers;
  auto& dying = spawn(servers,
                      {(fs::path(FCVM_BINARY_DIR) / "tests/uffd-serve-tool").string(), options.memory_image.string(),
                       options.socket.string(), options.state_dir.string(), "--accept-any", "--prefetch", "off",
                       "--stop-after-faults", "40"},
                      {}, out_write.get());
  out_write.reset();
  char ready[6] = {};
  ASSERT_EQ(::read(out_read.get(), ready, 6), 6);

  auto& clone = restore_clone("adopted", options.socket, [](pid_t) {});
  // No time bound: until the server stopped itself and a QEMU thread hangs on a fault.
  while (slurp(fs::path("/proc") / std::to_string(dying.pid()) / "stat").find(") T") == std::string::npos ||
         !waits_on_fault(clone.pid())) {
    ASSERT_FALSE(clone.try_wait().has_value()) << slurp(dir_ / "adopted.log");
    ::usleep(20000);
  }
  const auto before = ticks(dir_ / "adopted.log").size();
  dying.kill();

  auto server = UffdPageServer::start(options, std::make_shared<testing::StderrLogger>("new-server"));
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_TRUE((*server)->adopt(clone.pid()).ok());
  ServerThread loop(**server);
  loop.start();
  expect_continues("adopted", wait_ticks("adopted", clone, before + 2));
  loop.stop();
  const auto stats = (*server)->stats().at(0);
  std::cerr << "adopted: " << stats.to_json().dump() << "\n";
  EXPECT_TRUE(stats.adopted);
  EXPECT_GT(stats.pages_copied, 0u);
}

}  // namespace
}  // namespace fcvm::uffd
