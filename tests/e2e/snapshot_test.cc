// `fcvm snapshot create|ls|rm|serve|run` against real microVMs: one source VM for the suite,
// snapshots of it, clones of those.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "fcvm_cli.h"

namespace fcvm::test {
namespace {

namespace fs = std::filesystem;

// Runs once per VMM plugin (TEST_P; see the instantiation at the end), each with its own
// data dir and source VM; a plugin that cannot run here (vmm-firecracker without its
// binary or hardware KVM) is SKIPPED with its probe's reason.
class SnapshotTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
    auto& suite = suites_[GetParam()];
    if (!suite.cli) {
      suite.cli = std::make_unique<FcvmCli>(GetParam());
      suite.unavailable = suite.cli->vmm_unavailable();
      if (suite.unavailable.empty()) suite.source_problem = start_source(*suite.cli);
    }
    if (!suite.unavailable.empty()) GTEST_SKIP() << suite.unavailable;
    ASSERT_TRUE(suite.source_problem.empty()) << suite.source_problem;
    cli_ = suite.cli.get();
  }

  // Starts the suite's source VM, "src"; returns what went wrong, or empty.
  static std::string start_source(const FcvmCli& cli) {
    // State on the disk (/root is the overlay on the scratch disk) and in memory (/tmp is
    // tmpfs in the guest), both written before any snapshot is taken, and a counter that
    // lives in the shell's memory (copied to /tmp/count as it goes).
    // --no-snapshot: the snapshots here are the tests' own; none of the run's startup cache.
    auto r = cli.run({"podman", "run", "-d", "--no-snapshot", "--name", "src", "--kernel", FcvmCli::kernel().string(),
                      FcvmCli::hello_image(), "sh", "-c",
                      "echo on-disk > /root/disk-mark; echo in-memory > /tmp/mem-mark; "
                      "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 1; done"});
    if (r.code != 0) return "podman run -d: " + r.err;
    // The marks are written by the container's first commands: wait until they are there.
    for (int tries = 0; tries < 300; ++tries) {
      if (cli.run({"exec", "src", "cat", "/tmp/mem-mark"}).out == "in-memory\n") return {};
    }
    return "the source never wrote its marks";
  }
  static void TearDownTestSuite() {
    for (auto& [vmm, suite] : suites_) {
      if (!suite.cli || !suite.unavailable.empty()) continue;
      (void)suite.cli->run({"stop", "src"});
      (void)suite.cli->run({"gc"});
    }
    suites_.clear();
    cli_ = nullptr;
  }

  // Names of the VM directories under the data dir.
  static std::set<std::string> vm_dirs() {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(cli_->data_dir() / "vms", ec)) out.insert(e.path().filename());
    return out;
  }
  static bool vmm_running_in(const std::string& dir) { return !processes_matching(dir + "/").empty(); }

  struct Suite {
    std::unique_ptr<FcvmCli> cli;
    std::string unavailable;     // the VMM's probe says why it cannot run here
    std::string source_problem;  // the source VM did not come up
  };
  static inline std::map<std::string, Suite> suites_;
  static inline FcvmCli* cli_ = nullptr;
};

TEST_P(SnapshotTest, CloneContinuesTheSourcesDiskAndMemoryAndCleansUp) {
  auto created = cli_->run({"snapshot", "create", "src", "--tag", "cont"});
  ASSERT_EQ(created.code, 0) << created.err;
  EXPECT_EQ(created.out, "cont\n");
  const fs::path dir = cli_->data_dir() / "snapshots" / "cont";
  struct stat st{};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  auto ls = cli_->run({"snapshot", "ls", "--json"});
  ASSERT_EQ(ls.code, 0) << ls.err;
  auto list = nlohmann::json::parse(ls.out);
  ASSERT_EQ(list.size(), 1u) << ls.out;
  EXPECT_EQ(list[0]["tag"], "cont");
  EXPECT_EQ(list[0]["source_name"], "src");
  EXPECT_FALSE(list[0]["boot_id"].get<std::string>().empty());
  // Who wrote it and for which machine: a clone is refused by another VMM version.
  EXPECT_FALSE(list[0]["vmm_version"].get<std::string>().empty()) << ls.out;
  EXPECT_GT(list[0]["machine"]["memory_mib"].get<unsigned>(), 0u) << ls.out;
  EXPECT_EQ(list[0]["machine"]["image_digest"].get<std::string>().rfind("sha256:", 0), 0u) << ls.out;
  EXPECT_FALSE(list[0]["machine"]["kernel"].get<std::string>().empty()) << ls.out;

  const auto before = vm_dirs();
  auto clone = cli_->run({"snapshot", "run", "--snapshot", "cont", "--exec", "cat", "/root/disk-mark", "/tmp/mem-mark"});
  EXPECT_EQ(clone.code, 0) << clone.err;
  EXPECT_EQ(clone.out, "on-disk\nin-memory\n");

  // The source's running process goes on counting from where the snapshot held it (a fresh
  // start would count from 1), and the clone's clock was stepped to now at attach though
  // the snapshot is a few seconds old.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  auto first = cli_->run({"snapshot", "run", "--snapshot", "cont", "--exec", "cat", "/tmp/count"});
  ASSERT_EQ(first.code, 0) << first.err;
  const long held = std::atol(first.out.c_str());
  auto host_seconds = [] {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const auto host_before = host_seconds();
  auto later = cli_->run({"snapshot", "run", "--snapshot", "cont", "--exec", "sh", "-c",
                          "date +%s; sleep 3; cat /tmp/count"});
  const auto host_after = host_seconds();
  ASSERT_EQ(later.code, 0) << later.err;
  std::istringstream words(later.out);
  long guest_now = 0, counted = 0;
  words >> guest_now >> counted;
  EXPECT_GE(guest_now, host_before - 1) << "the clone's clock lags (not stepped at attach): " << later.out;
  EXPECT_LE(guest_now, host_after + 1) << later.out;
  EXPECT_GT(counted, held) << "the counter did not go on in the clone: " << later.out;
  EXPECT_GE(held, 1);
  // Each clone's CRNG is rekeyed at attach: two clones of one memory image draw different bytes.
  std::set<std::string> draws;
  for (int i = 0; i < 2; ++i) {
    auto r = cli_->run({"snapshot", "run", "--snapshot", "cont", "--exec", "sh", "-c", "head -c 32 /dev/urandom | md5sum"});
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_EQ(r.out.size(), 36u) << r.out;  // 32 hex digits, "  -", newline
    draws.insert(r.out);
  }
  EXPECT_EQ(draws.size(), 2u) << "two clones drew the same random bytes";
  auto failing = cli_->run({"snapshot", "run", "--snapshot", "cont", "--exec", "sh", "-c", "exit 3"});
  EXPECT_EQ(failing.code, 3) << failing.err;
  // --exec clones leave nothing: no record, no directory.
  EXPECT_EQ(vm_dirs(), before);
  for (const auto& rec : cli_->ls()) EXPECT_NE(rec["type"], "clone") << rec.dump();
  // The source runs on.
  EXPECT_EQ(cli_->run({"exec", "src", "cat", "/tmp/mem-mark"}).out, "in-memory\n");
  EXPECT_EQ(cli_->run({"snapshot", "rm", "cont"}).code, 0);
  EXPECT_FALSE(fs::exists(dir));
}

TEST_P(SnapshotTest, ClonesOfOneServeAreIsolatedOutliveTheSnapshotAndStopWithTheServe) {
  ASSERT_EQ(cli_->run({"snapshot", "create", "src", "--tag", "iso"}).code, 0);
  auto serve = cli_->start({"snapshot", "serve", "iso", "--name", "iso-serve"});
  ASSERT_TRUE(cli_->wait_status("iso-serve", "running", std::chrono::seconds(60)));
  const std::string pid = std::to_string(serve.pid());
  for (const char* name : {"c1", "c2"}) {
    auto r = cli_->run({"snapshot", "run", "--pid", pid, "-d", "--name", name});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  const auto c1 = cli_->record("c1");
  const auto c2 = cli_->record("c2");
  EXPECT_EQ(c1["serve_pid"], serve.pid()) << c1.dump();
  EXPECT_NE(cli_->run({"ls"}).out.find("iso (serve " + pid + ")"), std::string::npos);

  // A clone's writes, to disk and to memory, reach neither its sibling nor the source.
  ASSERT_EQ(cli_->run({"exec", "c1", "sh", "-c", "echo c1 > /root/mine; echo c1 > /tmp/mine; cat /tmp/mem-mark"}).out,
            "in-memory\n");
  for (const char* other : {"c2", "src"}) {
    auto r = cli_->run({"exec", other, "sh", "-c", "cat /root/mine /tmp/mine 2>/dev/null; echo absent"});
    EXPECT_EQ(r.out, "absent\n") << other;
  }

  // The serve holds the snapshot; --force removes it and the clones keep working.
  auto refused = cli_->run({"snapshot", "rm", "iso"});
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("--force"), std::string::npos) << refused.err;
  ASSERT_EQ(cli_->run({"snapshot", "rm", "--force", "iso"}).code, 0);
  EXPECT_EQ(cli_->run({"exec", "c2", "cat", "/root/disk-mark"}).out, "on-disk\n");
  EXPECT_EQ(cli_->run({"exec", "c1", "cat", "/tmp/mine"}).out, "c1\n");

  // Stopping the serve stops its clones, and everything of theirs is gone.
  ASSERT_TRUE(serve.signal(SIGTERM).ok());
  ASSERT_TRUE(serve.wait(std::chrono::seconds(120)).has_value());
  for (const auto& rec : {c1, c2}) {
    EXPECT_FALSE(cli_->record(rec["name"])["alive"].get<bool>());
    EXPECT_FALSE(vmm_running_in(rec["vm_dir"])) << rec.dump();
  }
  EXPECT_TRUE(cli_->record("iso-serve").is_null());
  (void)cli_->run({"gc"});
  EXPECT_EQ(vm_dirs(), std::set<std::string>{cli_->record("src")["id"].get<std::string>()});
}

TEST_P(SnapshotTest, ClonesOfAServeKilledWithSigkillStopThemselvesAndGcClearsUp) {
  ASSERT_EQ(cli_->run({"snapshot", "create", "src", "--tag", "orphan"}).code, 0);
  auto serve = cli_->start({"snapshot", "serve", "orphan", "--name", "orphan-serve"});
  ASSERT_TRUE(cli_->wait_status("orphan-serve", "running", std::chrono::seconds(60)));
  auto r = cli_->run({"snapshot", "run", "--pid", std::to_string(serve.pid()), "-d", "--name", "orphan1"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto clone = cli_->record("orphan1");
  ASSERT_TRUE(serve.signal(SIGKILL).ok());
  (void)serve.wait();
  // The clone's own process watches the serve and stops its VM.
  EXPECT_TRUE(cli_->wait_status("orphan1", "exited", std::chrono::seconds(120)));
  EXPECT_FALSE(vmm_running_in(clone["vm_dir"]));
  ASSERT_EQ(cli_->run({"gc"}).code, 0);
  EXPECT_TRUE(cli_->record("orphan1").is_null());
  EXPECT_TRUE(cli_->record("orphan-serve").is_null());
  EXPECT_EQ(vm_dirs(), std::set<std::string>{cli_->record("src")["id"].get<std::string>()});
  EXPECT_EQ(cli_->run({"snapshot", "rm", "orphan"}).code, 0);
}

TEST_P(SnapshotTest, ADiskOnlySnapshotIsClonedByColdBootingACopyOfItsDisks) {
  // Written after the source's marks: one file on the disk, one only in guest memory.
  ASSERT_EQ(cli_->run({"exec", "src", "sh", "-c", "echo later > /root/later; echo x > /tmp/only-in-memory"}).code, 0);
  auto created = cli_->run({"snapshot", "create", "src", "--tag", "disks", "--disk-only"});
  ASSERT_EQ(created.code, 0) << created.err;
  const fs::path dir = cli_->data_dir() / "snapshots" / "disks";
  EXPECT_FALSE(fs::exists(dir / "mem"));
  auto ls = nlohmann::json::parse(cli_->run({"snapshot", "ls", "--json"}).out);
  ASSERT_EQ(ls.size(), 1u) << ls.dump();
  EXPECT_TRUE(ls[0]["disk_only"].get<bool>()) << ls.dump();

  const auto before = vm_dirs();
  auto clone = cli_->run({"snapshot", "run", "--snapshot", "disks", "--kernel", FcvmCli::kernel().string(), "--exec", "sh", "-c",
                          "cat /root/later; test -e /tmp/only-in-memory && echo restored || echo cold-booted; echo x > /root/clone-wrote"});
  EXPECT_EQ(clone.code, 0) << clone.err;
  EXPECT_EQ(clone.out, "later\ncold-booted\n");
  // A second clone starts from the snapshot's disks again, not from the first clone's.
  auto second = cli_->run({"snapshot", "run", "--snapshot", "disks", "--kernel", FcvmCli::kernel().string(), "--exec", "sh", "-c",
                           "test -e /root/clone-wrote && echo shared || echo own"});
  EXPECT_EQ(second.out, "own\n") << second.err;
  EXPECT_EQ(vm_dirs(), before);
  for (const auto& rec : cli_->ls()) EXPECT_NE(rec["type"], "clone") << rec.dump();
  // No memory to serve: refused with the way that works.
  auto serve = cli_->run({"snapshot", "serve", "disks"});
  EXPECT_NE(serve.code, 0);
  EXPECT_NE(serve.err.find("--snapshot"), std::string::npos) << serve.err;
  EXPECT_EQ(cli_->run({"snapshot", "rm", "disks"}).code, 0);
}

TEST_P(SnapshotTest, ACloneGivenTheWrongMemoryIsRefusedNotBootedAfresh) {
  ASSERT_EQ(cli_->run({"snapshot", "create", "src", "--tag", "bad"}).code, 0);
  const fs::path mem = cli_->data_dir() / "snapshots" / "bad" / "mem";
  const auto size = fs::file_size(mem);
  fs::remove(mem);
  std::ofstream(mem).close();
  fs::resize_file(mem, size);  // all zeros: not this guest's memory
  const auto before = vm_dirs();
  auto r = cli_->run({"snapshot", "run", "--snapshot", "bad", "--exec", "echo", "booted"});
  EXPECT_EQ(r.code, 125) << r.out;
  EXPECT_EQ(r.out.find("booted"), std::string::npos);
  EXPECT_NE(r.err.find("refused"), std::string::npos) << r.err;
  EXPECT_EQ(vm_dirs(), before);
  for (const auto& rec : cli_->ls()) EXPECT_NE(rec["type"], "clone") << rec.dump();
  EXPECT_EQ(cli_->run({"snapshot", "rm", "bad"}).code, 0);
}

TEST_P(SnapshotTest, KilledCreateLeavesNothingHalfMadeAndTheSourceRuns) {
  auto create = cli_->start({"snapshot", "create", "src", "--tag", "killed"});
  // Killed while the snapshot is being built (its hidden temp directory exists), when that
  // moment is seen; else as soon as the client runs.
  auto building = [&] {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(cli_->data_dir() / "snapshots", ec)) {
      if (e.path().filename().string()[0] == '.') return true;
    }
    return false;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::optional<ExitStatus> ended;
  while (!building() && !(ended = create.try_wait()) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!ended) {
    ASSERT_TRUE(create.signal(SIGKILL).ok());
    (void)create.wait();
  }
  // Whatever point the kill reached, a snapshot is whole or absent; the builder abandons a
  // snapshot whose client is gone, and temp directories are swept by the next create.
  auto done = cli_->run({"snapshot", "create", "src", "--tag", "after-kill"});
  ASSERT_EQ(done.code, 0) << done.err;
  for (const auto& e : fs::directory_iterator(cli_->data_dir() / "snapshots")) {
    const auto name = e.path().filename().string();
    EXPECT_NE(name[0], '.') << "left behind: " << name;
    EXPECT_TRUE(fs::exists(e.path() / "manifest.json")) << name;
  }
  EXPECT_EQ(cli_->run({"exec", "src", "cat", "/tmp/mem-mark"}).out, "in-memory\n");
  (void)cli_->run({"snapshot", "rm", "killed"});
  EXPECT_EQ(cli_->run({"snapshot", "rm", "after-kill"}).code, 0);
}

TEST_P(SnapshotTest, APausedVmRefusesExecUntilUnpausedAndStaysPausedThroughASnapshot) {
  ASSERT_EQ(cli_->run({"pause", "src"}).code, 0);
  ASSERT_EQ(cli_->run({"pause", "src"}).code, 0) << "pausing twice is fine";
  EXPECT_EQ(cli_->record("src")["status"], "paused");  // ls --json, as podman ps shows it
  auto table = cli_->run({"ls"});
  EXPECT_NE(table.out.find(" paused "), std::string::npos) << table.out;
  auto refused = cli_->run({"exec", "src", "true"});
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("unpause"), std::string::npos) << refused.err;
  auto created = cli_->run({"snapshot", "create", "src", "--tag", "paused"});
  EXPECT_EQ(created.code, 0) << created.err;
  EXPECT_NE(cli_->run({"exec", "src", "true"}).code, 0) << "the snapshot resumed a paused VM";
  ASSERT_EQ(cli_->run({"unpause", "src"}).code, 0);
  EXPECT_EQ(cli_->record("src")["status"], "running");
  EXPECT_EQ(cli_->run({"exec", "src", "cat", "/tmp/mem-mark"}).out, "in-memory\n");
  EXPECT_EQ(cli_->run({"snapshot", "rm", "paused"}).code, 0);
  auto no_vm = cli_->run({"pause", "nosuchvm"});
  EXPECT_NE(no_vm.code, 0);
  EXPECT_EQ(std::count(no_vm.err.begin(), no_vm.err.end(), '\n'), 1) << no_vm.err;
}

TEST_P(SnapshotTest, BadInputIsAOneLineErrorAndLeavesNothing) {
  auto no_vm = cli_->run({"snapshot", "create", "nosuchvm"});
  EXPECT_NE(no_vm.code, 0);
  EXPECT_EQ(std::count(no_vm.err.begin(), no_vm.err.end(), '\n'), 1) << no_vm.err;
  auto no_snap = cli_->run({"snapshot", "run", "--snapshot", "nosuch", "--exec", "true"});
  EXPECT_NE(no_snap.code, 0);
  EXPECT_NE(no_snap.err.find("fcvm snapshot ls"), std::string::npos) << no_snap.err;
  EXPECT_NE(cli_->run({"snapshot", "create", "src", "--tag", "Bad/Tag"}).code, 0);
  EXPECT_TRUE(!fs::exists(cli_->data_dir() / "snapshots") ||
              fs::is_empty(cli_->data_dir() / "snapshots"));
}

INSTANTIATE_TEST_SUITE_P(Vmm, SnapshotTest, ::testing::ValuesIn(kVmmPlugins),
                         [](const auto& p) { return test_param_name(p.param); });

}  // namespace
}  // namespace fcvm::test
