#include "supervise/capped_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "fcvm/atomic_file.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

class CappedLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create("fcvm-capped-log-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    dir_ = std::move(*made);
  }
  std::filesystem::path path(const char* name) const { return dir_.path() / name; }
  TempDir dir_;
};

// Past the cap the log rotates once: the previous file becomes .1, the newest output is
// whole in the new file, and never more than twice the cap is on disk.
TEST_F(CappedLogTest, RotatesOnceKeepingTheNewestOutput) {
  auto log = CappedLog::open(path("out.log"), 10);
  ASSERT_TRUE(log.ok()) << log.status().message();
  ASSERT_TRUE(log->append("12345678").ok());
  ASSERT_TRUE(log->append("abcd").ok());  // 12 > 10: rotate first
  EXPECT_EQ(read_file(path("out.log.1")).value(), "12345678");
  EXPECT_EQ(read_file(path("out.log")).value(), "abcd");
  ASSERT_TRUE(log->append("efghijk").ok());
  EXPECT_EQ(read_file(path("out.log.1")).value(), "abcd");
  EXPECT_EQ(read_file(path("out.log")).value(), "efghijk");
  struct stat st {};
  ASSERT_EQ(::stat(path("out.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(CappedLogTest, ZeroMeansNoCapAndAnExistingLogCounts) {
  ASSERT_TRUE(write_file_atomic(path("a.log"), "old").ok());
  auto uncapped = CappedLog::open(path("a.log"), 0);
  ASSERT_TRUE(uncapped.ok());
  ASSERT_TRUE(uncapped->append(std::string(1000, 'x')).ok());
  EXPECT_EQ(read_file(path("a.log")).value().size(), 1003u);
  auto capped = CappedLog::open(path("a.log"), 1005);
  ASSERT_TRUE(capped.ok());
  ASSERT_TRUE(capped->append("yyy").ok());
  EXPECT_EQ(read_file(path("a.log")).value(), "yyy");
  EXPECT_EQ(read_file(path("a.log.1")).value().size(), 1003u);
}

// A file another process appends to keeps its newest half behind a marker, and that
// process's next append lands at the new end.
TEST_F(CappedLogTest, AppendedFileKeepsItsNewestHalf) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "line " + std::to_string(i) + "\n";
  ASSERT_TRUE(write_file_atomic(path("console.log"), text).ok());
  UniqueFd writer(::open(path("console.log").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  ASSERT_TRUE(writer);
  ASSERT_TRUE(cap_appended_file(path("console.log"), 400).ok());
  std::string kept = read_file(path("console.log")).value();
  EXPECT_LE(kept.size(), 200u);
  EXPECT_EQ(kept.rfind("[fcvm: this log passed 400 bytes; older lines were dropped]\n", 0), 0u) << kept;
  EXPECT_EQ(kept.substr(kept.size() - 8), "line 99\n");
  ASSERT_EQ(::write(writer.get(), "next\n", 5), 5);
  EXPECT_EQ(read_file(path("console.log")).value(), kept + "next\n");
  // Under the cap, a missing file, or no cap: nothing changes.
  ASSERT_TRUE(cap_appended_file(path("console.log"), 400).ok());
  EXPECT_EQ(read_file(path("console.log")).value(), kept + "next\n");
  EXPECT_TRUE(cap_appended_file(path("missing.log"), 400).ok());
  EXPECT_TRUE(cap_appended_file(path("console.log"), 0).ok());
}

}  // namespace
}  // namespace fcvm
