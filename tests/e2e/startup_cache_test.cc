// The startup-snapshot cache of `fcvm podman run` against real microVMs: the first run of a
// container boots and snapshots it at its startup barrier; a later run of the same container
// restores that snapshot and gives the same output; any change of its inputs misses.
#include <gtest/gtest.h>

#include <algorithm>

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

}  // namespace
}  // namespace fcvm::test
