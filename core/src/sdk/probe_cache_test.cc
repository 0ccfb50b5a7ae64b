#include "fcvm/probe_cache.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "fcvm/atomic_file.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

class ProbeCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = TempDir::create("fcvm-probe-cache-");
    ASSERT_TRUE(t.ok());
    tmp_ = std::move(*t);
    tool_ = tmp_.path() / "tool";
    write_tool("v1");
  }
  // A tool that counts its runs and prints its version.
  void write_tool(const std::string& version) {
    std::ofstream(tool_) << "#!/bin/sh\necho x >> " << (tmp_.path() / "runs").string() << "\necho " << version << "\n";
    ::chmod(tool_.c_str(), 0755);
  }
  int runs() const {
    std::ifstream in(tmp_.path() / "runs");
    int n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  }
  Result<std::string> probe() { return cached_command_output(tmp_.path() / "cache", {tool_.string()}, {tool_}); }

  TempDir tmp_;
  fs::path tool_;
};

TEST_F(ProbeCacheTest, RunsOnceUntilTheKeyFileChanges) {
  EXPECT_EQ(probe().value(), "v1\n");
  EXPECT_EQ(probe().value(), "v1\n");
  EXPECT_EQ(runs(), 1);
  // The stored file is private.
  for (const auto& e : fs::directory_iterator(tmp_.path() / "cache")) {
    struct stat st {};
    ASSERT_EQ(::stat(e.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << e.path();
  }
  write_tool("v2-longer");  // a new size and mtime: the binary was upgraded
  EXPECT_EQ(probe().value(), "v2-longer\n");
  EXPECT_EQ(runs(), 2);
  EXPECT_EQ(probe().value(), "v2-longer\n");
  EXPECT_EQ(runs(), 2);
}

TEST_F(ProbeCacheTest, FailuresAndUnkeyedCallsAreNotCached) {
  auto failing = [&] { return cached_command_output(tmp_.path() / "cache", {"sh", "-c", "exit 3"}, {tool_}); };
  EXPECT_FALSE(failing().ok());
  EXPECT_FALSE(fs::exists(tmp_.path() / "cache"));
  auto unkeyed = [&] { return cached_command_output(tmp_.path() / "cache", {tool_.string()}, {tmp_.path() / "gone"}); };
  EXPECT_EQ(unkeyed().value(), "v1\n");
  EXPECT_EQ(unkeyed().value(), "v1\n");
  EXPECT_EQ(runs(), 2);
}

TEST_F(ProbeCacheTest, AStoredEntryForAnotherKeyIsIgnored) {
  ASSERT_TRUE(probe().ok());
  for (const auto& e : fs::directory_iterator(tmp_.path() / "cache")) {
    ASSERT_TRUE(write_file_atomic(e.path(), R"({"key":"something else","output":"forged\n"})").ok());
  }
  EXPECT_EQ(probe().value(), "v1\n");
  EXPECT_EQ(runs(), 2);
  for (const auto& e : fs::directory_iterator(tmp_.path() / "cache")) {
    ASSERT_TRUE(write_file_atomic(e.path(), R"({"key":7,"output":[]})").ok());  // damaged: re-run, no throw
  }
  EXPECT_EQ(probe().value(), "v1\n");
  EXPECT_EQ(runs(), 3);
}

}  // namespace
}  // namespace fcvm
