// `fcvm snapshot serve --memory memory-uffd` against real QEMU clones (TCG here): the serve
// is the clones' page server (Firecracker's UFFD handshake through vmm-qemu's preload
// shim), survives a kill -9 by re-adoption, and publishes its counters; `fcvm gc` stops
// clones nobody adopted. One source VM and two clones for the whole suite (TCG is slow).
#include <gtest/gtest.h>
#include <signal.h>

#include <deque>
#include <iostream>
#include <thread>

#include "fcvm_cli.h"

namespace fcvm::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class SnapshotUffdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
    if (::access("/dev/userfaultfd", R_OK | W_OK) != 0 && ::geteuid() != 0) {
      GTEST_SKIP() << "needs root or read-write /dev/userfaultfd";
    }
    cli_ = std::make_unique<FcvmCli>();
    // State in memory (/tmp is tmpfs in the guest), written before the snapshot.
    auto r = cli_->run({"podman", "run", "-d", "--no-snapshot", "--name", "src", "--kernel", FcvmCli::kernel().string(),
                        FcvmCli::hello_image(), "sh", "-c", "echo in-memory > /tmp/mem-mark; while true; do sleep 1; done"});
    ASSERT_EQ(r.code, 0) << r.err;
    bool marked = false;
    for (int tries = 0; tries < 300 && !marked; ++tries) {
      marked = cli_->run({"exec", "src", "cat", "/tmp/mem-mark"}).out == "in-memory\n";
    }
    ASSERT_TRUE(marked) << "the source never wrote its mark";
    auto created = cli_->run({"snapshot", "create", "src", "--tag", "u"});
    ASSERT_EQ(created.code, 0) << created.err;
    // The clones need the CPU more than the source.
    ASSERT_EQ(cli_->run({"stop", "src"}).code, 0);
  }
  void TearDown() override {
    if (!cli_) return;
    for (auto& s : serves_) {
      if (s.valid()) {
        (void)s.signal(SIGTERM);
        (void)s.wait(120s);
      }
    }
    (void)cli_->run({"gc"});
    EXPECT_TRUE(processes_matching(cli_->data_dir().string() + "/").empty()) << "processes left behind";
  }

  ChildProcess& start_serve(const std::string& name) {
    serves_.push_back(cli_->start({"snapshot", "serve", "u", "--memory", "memory-uffd", "--name", name}));
    EXPECT_TRUE(cli_->wait_status(name, "running", 60s));
    return serves_.back();
  }

  // Snapshot "u" in `snapshot ls --json` (podman run may have cached a startup snapshot too).
  nlohmann::json snapshot_u() {
    for (const auto& s : nlohmann::json::parse(cli_->run({"snapshot", "ls", "--json"}).out)) {
      if (s["tag"] == "u") return s;
    }
    ADD_FAILURE() << "snapshot u is not listed";
    return nlohmann::json::object({{"serves", nlohmann::json::array()}});
  }

  // The clone's ls --json record once the serve has published its counters for it.
  nlohmann::json record_with_counters(const std::string& name) {
    for (;;) {
      auto rec = cli_->record(name);
      if (rec.is_null() || !rec["alive"].get<bool>()) return rec;
      if (rec.contains("memory_server") && rec["memory_server"].is_object()) return rec;
      std::this_thread::sleep_for(200ms);  // the serve publishes once a second
    }
  }

  std::unique_ptr<FcvmCli> cli_;
  std::deque<ChildProcess> serves_;
};

TEST_F(SnapshotUffdTest, ClonesServedByPagesSurviveAServeRestartAndGcStopsTheUnadopted) {
  ChildProcess& first = start_serve("us1");
  const std::string pid = std::to_string(first.pid());

  auto c1 = cli_->run({"snapshot", "run", "--pid", pid, "-d", "--name", "u1"});
  ASSERT_EQ(c1.code, 0) << c1.err;
  EXPECT_EQ(cli_->run({"exec", "u1", "cat", "/tmp/mem-mark"}).out, "in-memory\n");
  // The first clone's first moments are recorded as the snapshot's working set.
  const fs::path working_set = cli_->data_dir() / "snapshots" / "u" / "memory-uffd.working-set.json";
  while (!fs::exists(working_set)) std::this_thread::sleep_for(500ms);

  auto c2 = cli_->run({"snapshot", "run", "--pid", pid, "-d", "--name", "u2"});
  ASSERT_EQ(c2.code, 0) << c2.err;
  EXPECT_EQ(cli_->run({"exec", "u2", "cat", "/tmp/mem-mark"}).out, "in-memory\n");

  // Each clone's memory came from the page server; the second got the working set pushed
  // and faulted far less.
  const auto u1 = record_with_counters("u1");
  const auto u2 = record_with_counters("u2");
  ASSERT_TRUE(u1["memory_server"].is_object()) << u1.dump();
  ASSERT_TRUE(u2["memory_server"].is_object()) << u2.dump();
  const auto f1 = u1["memory_server"]["faults"].get<std::uint64_t>();
  const auto f2 = u2["memory_server"]["faults"].get<std::uint64_t>();
  std::cerr << "page faults: first clone " << f1 << ", second clone (working set pushed) " << f2 << "\n";
  EXPECT_GT(f1, 100u) << u1.dump();
  EXPECT_GT(u2["memory_server"]["prefetched_pages"].get<std::uint64_t>(), 0u) << u2.dump();
  EXPECT_LT(f2 * 2, f1) << "prefetch did not halve the second clone's faults";
  EXPECT_EQ(u1["memory_server"]["pid"], u1["vmm_pid"]);
  for (const auto& rec : {u1, u2}) {
    ASSERT_TRUE(rec["pss"].is_object()) << rec.dump();
    EXPECT_GT(rec["pss"]["pss_anon"].get<std::uint64_t>(), 0u) << "UFFDIO_COPY pages are private";
    EXPECT_TRUE(rec["pss"].contains("pss_file") && rec["pss"].contains("pss_shmem")) << rec.dump();
  }
  const auto snapshot = snapshot_u();
  ASSERT_EQ(snapshot["serves"].size(), 1u) << snapshot.dump();
  EXPECT_EQ(snapshot["serves"][0]["memory_clients"].size(), 2u) << snapshot.dump();
  const auto& disk = snapshot["disk"];
  EXPECT_GT(disk["allocated_bytes"].get<std::uint64_t>(), 0u) << disk.dump();
  EXPECT_EQ(disk["shared_bytes"].get<std::uint64_t>() + disk["owned_bytes"].get<std::uint64_t>(),
            disk["allocated_bytes"].get<std::uint64_t>());

  // kill -9 of the serve: the clones hang at their next fault, a new serve adopts them.
  ASSERT_TRUE(first.signal(SIGKILL).ok());
  (void)first.wait();
  ChildProcess& second = start_serve("us2");
  for (const char* name : {"u1", "u2"}) {
    const auto rec = cli_->record(name);
    ASSERT_TRUE(rec["alive"].get<bool>()) << rec.dump();
    EXPECT_EQ(rec["serve_pid"], second.pid()) << rec.dump();
    auto r = cli_->run({"exec", name, "sh", "-c", "cat /tmp/mem-mark; echo after > /tmp/after; cat /tmp/after"});
    EXPECT_EQ(r.out, "in-memory\nafter\n") << name << ": " << r.err;
    EXPECT_TRUE(record_with_counters(name)["memory_server"]["adopted"].get<bool>());
  }

  // Killed again, with no serve to adopt them: gc stops both clones.
  const auto u1_dir = cli_->record("u1")["vm_dir"].get<std::string>();
  ASSERT_TRUE(second.signal(SIGKILL).ok());
  (void)second.wait();
  ASSERT_EQ(cli_->run({"gc"}).code, 0);
  for (const char* name : {"u1", "u2"}) {
    while (cli_->record(name)["alive"] == true) std::this_thread::sleep_for(500ms);
  }
  EXPECT_TRUE(processes_matching(u1_dir + "/").empty());
  ASSERT_EQ(cli_->run({"gc"}).code, 0);
  EXPECT_TRUE(cli_->record("u1").is_null());
  EXPECT_TRUE(cli_->record("us2").is_null());
}

TEST_F(SnapshotUffdTest, CloneBySnapshotUsesTheRunningPageServerAndExecIsTimeable) {
  auto refused = cli_->run({"snapshot", "run", "--snapshot", "u", "--memory", "memory-uffd", "--exec", "true"});
  EXPECT_EQ(refused.code, 2) << refused.err;
  EXPECT_NE(refused.err.find("snapshot serve u --memory memory-uffd"), std::string::npos) << refused.err;
  start_serve("us");
  auto r = cli_->run({"snapshot", "run", "--snapshot", "u", "--memory", "memory-uffd", "--exec", "cat", "/tmp/mem-mark"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "in-memory\n");
  // The serve publishes its counters once a second: wait until it saw the clone leave.
  nlohmann::json stats;
  for (;;) {
    const auto snapshot = snapshot_u();
    ASSERT_EQ(snapshot["serves"].size(), 1u) << snapshot.dump();
    stats = snapshot["serves"][0]["memory_clients"];
    ASSERT_LE(stats.size(), 1u) << stats.dump();
    if (stats.size() == 1 && !stats[0]["connected"].get<bool>()) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_GT(stats[0]["faults"].get<std::uint64_t>(), 0u);
  EXPECT_GT(stats[0]["bytes_copied"].get<std::uint64_t>(), 0u);
}

}  // namespace
}  // namespace fcvm::test
