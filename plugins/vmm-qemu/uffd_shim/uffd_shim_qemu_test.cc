// Real QEMU (TCG) clones served by the memory-uffd page server through fcvm-uffd-shim,
// driven directly over QMP (no fcvm snapshot commands): a source guest fills 16 MiB of
// tmpfs with random bytes and prints its boot id, a tick counter and the bytes' md5 in a
// loop; it is snapshotted with x-ignore-shared (RAM stays in its mem-file); clones on
// memory-backend-ram get every page from the page server and must continue the source's
// ticks with the source's boot id and checksum, never boot afresh.
#include <poll.h>
#include <unistd.h>

#include <atomic>
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
boot=$(/bin/busybox cat /proc/sys/kernel/random/boot_id)
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

class UffdShimQemuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* kernel = std::getenv("FCVM_TEST_KERNEL");
    if (!kernel || !fs::exists(kernel)) GTEST_SKIP() << "FCVM_TEST_KERNEL is not set (scripts/test sets it)";
    if (::geteuid() != 0) GTEST_SKIP() << "needs root for userfaultfd in QEMU and pidfd_getfd";
    if (::access("/usr/bin/qemu-system-x86_64", X_OK) != 0) GTEST_SKIP() << "qemu-system-x86_64 is not installed";
    if (::access("/usr/bin/busybox", X_OK) != 0) GTEST_SKIP() << "busybox-static is not installed";
    kernel_ = kernel;
    std::string tmpl = (fs::temp_directory_path() / "fcvm-uffd-qemu.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "root/bin");
    fs::copy_file("/usr/bin/busybox", dir_ / "root/bin/busybox");
    ASSERT_TRUE(write_file_atomic(dir_ / "root/init", kInit, 0755).ok());
    SpawnOptions o;
    o.argv = {"sh", "-c", "cd root && find . | cpio -o -H newc 2>/dev/null | gzip -1 > ../initrd.gz"};
    o.cwd = dir_;
    auto cpio = ChildProcess::spawn(o);
    ASSERT_TRUE(cpio.ok());
    ASSERT_TRUE(cpio->wait()->success());
  }
  void TearDown() override {
    vms_.clear();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::vector<std::string> qemu_argv(const std::string& name, const std::string& memory_object) {
    // Under TCG the guest cannot calibrate the TSC on microvm when the host is busy.
    std::string append = "console=ttyS0 quiet panic=-1";
    if (const unsigned khz = qemu::HostTsc::khz()) append += " tsc_early_khz=" + std::to_string(khz) + " tsc=reliable";
    return {"qemu-system-x86_64", "-M", "microvm,memory-backend=mem", "-accel", "tcg", "-m", "128M",
            "-object", memory_object, "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "file:" + (dir_ / (name + ".log")).string(), "-kernel", kernel_.string(),
            "-initrd", (dir_ / "initrd.gz").string(), "-append", append,
            "-qmp", "unix:" + (dir_ / (name + ".qmp")).string() + ",server=on,wait=off", "-no-reboot"};
  }

  ChildProcess& spawn(std::vector<std::string> argv, std::vector<std::string> env = {}) {
    SpawnOptions o;
    o.argv = std::move(argv);
    o.env_add = std::move(env);
    o.stderr_fd = 2;
    auto child = ChildProcess::spawn(o);
    EXPECT_TRUE(child.ok()) << child.status().message();
    vms_.push_back(std::move(*child));
    return vms_.back();
  }

  qemu::QmpClient qmp(const std::string& name, ChildProcess& vm) {
    for (;;) {
      auto c = qemu::QmpClient::connect(dir_ / (name + ".qmp"), 10s);
      if (c.ok()) return std::move(*c);
      EXPECT_FALSE(vm.try_wait().has_value()) << name << " exited: " << c.status().message();
      if (vm.try_wait()) return {};
      ::usleep(20000);
    }
  }

  static void wait_migration(qemu::QmpClient& q) {
    for (;;) {
      auto r = q.execute("query-migrate", nullptr, 60s);
      ASSERT_TRUE(r.ok()) << r.status().message();
      const std::string status = r->value("status", "");
      if (status == "completed") return;
      ASSERT_NE(status, "failed") << r->dump();
      ::usleep(20000);
    }
  }

  // Polls the console until `n` ticks are there (or the VM died).
  std::vector<Tick> wait_ticks(const std::string& name, ChildProcess& vm, std::size_t n) {
    for (;;) {
      auto t = ticks(dir_ / (name + ".log"));
      if (t.size() >= n || vm.try_wait()) return t;
      ::usleep(50000);
    }
  }

  static nlohmann::json ignore_shared() {
    return {{"capabilities", {{{"capability", "x-ignore-shared"}, {"state", true}}}}};
  }

  // Starts clone `name` served by `server`, restores it and returns its pid.
  pid_t restore_clone(const std::string& name, UffdPageServer& server, ServerThread& loop) {
    loop.stop();
    auto argv = qemu_argv(name, "memory-backend-ram,id=mem,size=128M");
    argv.insert(argv.end(), {"-incoming", "defer"});
    auto& vm = spawn(argv, {"LD_PRELOAD=" FCVM_UFFD_SHIM, "FCVM_UFFD_MEM_SIZE=" + std::to_string(kRamBytes),
                            "FCVM_UFFD_SOCKET=" + (dir_ / "uffd.sock").string()});
    server.expect_client(vm.pid());
    loop.start();
    auto q = qmp(name, vm);
    EXPECT_TRUE(q.execute("migrate-set-capabilities", ignore_shared()).ok());
    auto incoming = q.execute("migrate-incoming", {{"uri", "exec:cat " + (dir_ / "state").string()}});
    EXPECT_TRUE(incoming.ok()) << incoming.status().message();
    wait_migration(q);
    EXPECT_TRUE(q.execute("cont").ok());
    return vm.pid();
  }

  fs::path dir_, kernel_;
  std::deque<ChildProcess> vms_;
};

TEST_F(UffdShimQemuTest, ClonesContinueTheSourceFromThePageServer) {
  // Source: RAM in a shared file, so x-ignore-shared keeps it out of the state stream.
  auto& source = spawn(qemu_argv("source", "memory-backend-file,id=mem,size=128M,mem-path=" +
                                               (dir_ / "mem").string() + ",share=on"));
  const auto before = wait_ticks("source", source, 2);
  ASSERT_GE(before.size(), 2u) << slurp(dir_ / "source.log");
  {
    auto q = qmp("source", source);
    ASSERT_TRUE(q.execute("stop").ok());
    ASSERT_TRUE(q.execute("migrate-set-capabilities", ignore_shared()).ok());
    ASSERT_TRUE(q.execute("migrate", {{"uri", "exec:cat > " + (dir_ / "state").string()}}).ok());
    wait_migration(q);
  }
  source.kill();  // the template memory must never change again
  const auto at_snapshot = ticks(dir_ / "source.log");
  const Tick last = at_snapshot.back();
  EXPECT_LT(fs::file_size(dir_ / "state"), 1u << 20) << "guest RAM must not be in the state file";

  MemoryServeOptions options;
  options.memory_image = dir_ / "mem";
  options.socket = dir_ / "uffd.sock";
  options.state_dir = dir_ / "serve-state";
  options.snapshot_dir = dir_;
  auto server = UffdPageServer::start(options, std::make_shared<testing::StderrLogger>("page-server"));
  ASSERT_TRUE(server.ok()) << server.status().message();
  ServerThread loop(**server);

  // Clone 1 records the working set; it continues the source's ticks.
  const pid_t first = restore_clone("clone1", **server, loop);
  auto t1 = wait_ticks("clone1", vms_.back(), 2);
  ASSERT_GE(t1.size(), 2u) << slurp(dir_ / "clone1.log");
  EXPECT_EQ(slurp(dir_ / "clone1.log").find("UFFD-BOOT"), std::string::npos) << "the clone booted afresh";
  for (const auto& t : t1) {
    EXPECT_EQ(t.boot, last.boot);
    EXPECT_EQ(t.sum, last.sum) << "tick " << t.n << ": the guest's 16 MiB came back wrong";
    EXPECT_GT(t.n, last.n - 1) << "continues from the snapshot, not from 1";
  }
  vms_.back().kill();

  // Clone 2 gets the recorded working set pushed and takes fewer faults.
  const pid_t second = restore_clone("clone2", **server, loop);
  auto t2 = wait_ticks("clone2", vms_.back(), 2);
  ASSERT_GE(t2.size(), 2u) << slurp(dir_ / "clone2.log");
  for (const auto& t : t2) {
    EXPECT_EQ(t.boot, last.boot);
    EXPECT_EQ(t.sum, last.sum);
  }
  vms_.back().kill();
  loop.stop();
  while (!(*server)->clients().empty()) {
    pollfd p{(*server)->fd(), POLLIN, 0};
    ::poll(&p, 1, 20);
    ASSERT_TRUE((*server)->dispatch().ok());
  }
  MemoryClientStats a, b;
  for (const auto& s : (*server)->stats()) {
    if (s.pid == first) a = s;
    if (s.pid == second) b = s;
  }
  std::cerr << "clone1: " << a.to_json().dump() << "\nclone2: " << b.to_json().dump() << "\n";
  EXPECT_GT(a.faults, 100u);
  EXPECT_EQ(a.prefetched_pages, 0u);
  EXPECT_GT(b.prefetched_pages, 0u);
  EXPECT_LT(b.faults, a.faults);
}

}  // namespace
}  // namespace fcvm::uffd
