// The startup-snapshot cache of `fcvm podman run` against real microVMs: the first run of a
// container boots and snapshots it at its startup barrier; a later run of the same container
// restores that snapshot and gives the same output; any change of its inputs misses.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "fcvm/atomic_file.h"
#include "fcvm_cli.h"

namespace fcvm::test {
namespace {

class StartupCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
    cli_ = std::make_unique<FcvmCli>();
  }
  void TearDown() override {
    if (cli_) (void)cli_->run({"gc", "--cache"});
  }

  // A container whose output shows its environment and its name, exiting with 3.
  CliResult run(const std::string& name, const std::string& greeting, bool no_snapshot = false) {
    std::vector<std::string> args = {"podman", "run", "--name", name, "--kernel", FcvmCli::kernel().string(),
                                     "-e", "GREETING=" + greeting};
    if (no_snapshot) args.push_back("--no-snapshot");
    args.insert(args.end(), {FcvmCli::hello_image(), "sh", "-c",
                             "echo $GREETING from $(hostname); cat /etc/hostname; exit 3"});
    return cli_->run(args);
  }

  nlohmann::json cache_entries() const {
    auto all = nlohmann::json::parse(cli_->run({"snapshot", "ls", "--json"}).out);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : all) {
      if (!s["cache_key"].get<std::string>().empty()) out.push_back(s);
    }
    return out;
  }

  std::unique_ptr<FcvmCli> cli_;
};

TEST_F(StartupCacheTest, ACachedStartGivesTheColdStartsOutputAndAnyChangeMisses) {
  auto cold = run("first", "hi");
  EXPECT_EQ(cold.code, 3) << cold.err;
  EXPECT_EQ(cold.out, "hi from first\nfirst\n");
  EXPECT_EQ(cli_->record("first")["snapshot"], "") << "the first run booted";
  auto entries = cache_entries();
  ASSERT_EQ(entries.size(), 1u) << entries.dump();
  const std::string tag = entries[0]["tag"];
  EXPECT_EQ(tag.rfind("cache-", 0), 0u) << tag;
  EXPECT_NE(cli_->run({"snapshot", "ls"}).out.find("\tcache\t"), std::string::npos);

  // Same image, command, env and resources: restored, same output and exit code, its own name.
  auto cached = run("second", "hi");
  EXPECT_EQ(cached.code, 3) << cached.err;
  EXPECT_EQ(cached.out, "hi from second\nsecond\n");
  const auto record = cli_->record("second");
  EXPECT_EQ(record["snapshot"], tag) << record.dump();
  EXPECT_EQ(record["type"], "vm") << record.dump();
  EXPECT_EQ(cache_entries().size(), 1u);

  // A changed environment misses (and caches itself); --no-snapshot neither restores nor takes.
  auto changed = run("third", "bye");
  EXPECT_EQ(changed.code, 3) << changed.err;
  EXPECT_EQ(changed.out, "bye from third\nthird\n");
  EXPECT_EQ(cli_->record("third")["snapshot"], "");
  EXPECT_EQ(cache_entries().size(), 2u);
  auto bypass = run("fourth", "hi", /*no_snapshot=*/true);
  EXPECT_EQ(bypass.code, 3) << bypass.err;
  EXPECT_EQ(bypass.out, "hi from fourth\nfourth\n");
  EXPECT_EQ(cli_->record("fourth")["snapshot"], "");
  EXPECT_EQ(cache_entries().size(), 2u);

  for (const char* name : {"first", "second", "third", "fourth"}) EXPECT_EQ(cli_->run({"rm", name}).code, 0) << name;
  ASSERT_EQ(cli_->run({"gc", "--cache"}).code, 0);
  EXPECT_TRUE(cache_entries().empty());
}

// With a health check the entry is taken once the container is healthy: a later run goes on
// from there, already running, and its output is the cold run's, including what was printed
// before the snapshot (a value drawn then, which a fresh start would draw anew).
TEST_F(StartupCacheTest, AHealthCheckedRunIsCachedOnceHealthyAndGoesOnFromThere) {
  const std::string script =
      "n=$(cat /proc/sys/kernel/random/uuid); echo \"drew $n\"; echo warming >&2; touch /tmp/ready; "
      "while [ ! -f /tmp/go ]; do sleep 1; done; echo \"still $n\"; exit 7";
  auto start = [&](const std::string& name) {
    return cli_->run({"podman", "run", "-d", "--name", name, "--kernel", FcvmCli::kernel().string(), "--health-cmd",
                      "test -f /tmp/ready", "--health-interval", "1s", "--health-retries", "60",
                      FcvmCli::hello_image(), "sh", "-c", script});
  };
  // Lets the container finish; returns its log.
  auto finish = [&](const std::string& name) {
    EXPECT_EQ(cli_->run({"exec", name, "touch", "/tmp/go"}).code, 0);
    EXPECT_TRUE(cli_->wait_status(name, "exited", std::chrono::seconds(60)));
    EXPECT_EQ(cli_->record(name)["exit_code"], 7);
    return cli_->run({"logs", name}).out;
  };

  auto cold = start("cold");
  ASSERT_EQ(cold.code, 0) << cold.err;
  auto entries = cache_entries();
  ASSERT_EQ(entries.size(), 1u) << "taken before the detached run returned: " << entries.dump();
  const std::string cold_log = finish("cold");
  ASSERT_EQ(cold_log.rfind("drew ", 0), 0u) << cold_log;
  const std::string drawn = cold_log.substr(5, cold_log.find('\n') - 5);
  EXPECT_EQ(cold_log, "drew " + drawn + "\nwarming\nstill " + drawn + "\n");

  auto cached = start("cached");
  ASSERT_EQ(cached.code, 0) << cached.err;
  const auto record = cli_->record("cached");
  EXPECT_EQ(record["snapshot"], entries[0]["tag"]) << record.dump();
  EXPECT_EQ(record["health"]["status"], "healthy") << record.dump();
  // To its user a cached start is a VM like any other: it can be snapshotted and cloned.
  auto snap = cli_->run({"snapshot", "create", "cached", "--tag", "of-cached"});
  ASSERT_EQ(snap.code, 0) << snap.err;
  auto clone = cli_->run({"snapshot", "run", "--snapshot", "of-cached", "--exec", "sh", "-c",
                             "cat /tmp/ready /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '"});
  EXPECT_EQ(clone.code, 0) << clone.err;
  EXPECT_NE(clone.out.find("/tmp/go"), std::string::npos) << "the clone runs the cached run's container: " << clone.out;
  EXPECT_EQ(cli_->run({"snapshot", "rm", "of-cached"}).code, 0);
  EXPECT_EQ(finish("cached"), cold_log) << "the cached run continues the cold run's container";
  EXPECT_EQ(cache_entries().size(), 1u);

  // A damaged entry is replaced by the next run, not tripped over by every run.
  const auto output_file = cli_->data_dir() / "snapshots" / entries[0]["tag"].get<std::string>() / "startup-output";
  std::ofstream(output_file, std::ios::trunc) << "damaged";
  auto rebooted = start("rebooted");
  ASSERT_EQ(rebooted.code, 0) << rebooted.err;
  EXPECT_EQ(cli_->record("rebooted")["snapshot"], "") << "a damaged entry is not restored";
  EXPECT_NE(finish("rebooted"), cold_log);
  ASSERT_EQ(cache_entries().size(), 1u);
  auto replaced = read_file(output_file);
  EXPECT_TRUE(replaced.ok() && *replaced != "damaged") << "the entry was not replaced";

  // The same container without a health check is another entry (taken at the barrier).
  auto plain = cli_->run({"podman", "run", "--name", "plain", "--kernel", FcvmCli::kernel().string(),
                          FcvmCli::hello_image(), "sh", "-c", "exit 4"});
  EXPECT_EQ(plain.code, 4) << plain.err;
  EXPECT_EQ(cache_entries().size(), 2u);
}

}  // namespace
}  // namespace fcvm::test
