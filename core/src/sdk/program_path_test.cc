#include "fcvm/program_path.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

// Sets PATH for one test and restores it afterwards.
class ScopedPath {
 public:
  explicit ScopedPath(const std::string& value) {
    if (const char* old = std::getenv("PATH")) saved_ = old;
    ::setenv("PATH", value.c_str(), 1);
  }
  ~ScopedPath() { ::setenv("PATH", saved_.c_str(), 1); }

 private:
  std::string saved_;
};

class ProgramPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-program-path-test-");
    ASSERT_TRUE(dir.ok());
    dir_ = std::move(*dir);
    for (const char* d : {"a", "b"}) fs::create_directory(dir_.path() / d);
  }
  fs::path make(const std::string& rel, fs::perms perms) {
    const auto p = dir_.path() / rel;
    std::ofstream(p) << "#!/bin/sh\n";
    fs::permissions(p, perms);
    return p;
  }
  TempDir dir_;
};

TEST_F(ProgramPathTest, FirstExecutableRegularFileInPathOrder) {
  make("a/tool", fs::perms::owner_read);  // not executable: skipped
  fs::create_directory(dir_.path() / "a/dir-tool");  // a directory: skipped
  const auto wanted = make("b/tool", fs::perms::owner_all);
  make("b/dir-tool", fs::perms::owner_all);
  ScopedPath path((dir_.path() / "a").string() + ":" + (dir_.path() / "b").string());
  EXPECT_EQ(find_program("tool"), wanted);
  EXPECT_EQ(find_program("dir-tool"), dir_.path() / "b/dir-tool");
  EXPECT_TRUE(find_program("absent").empty());
  EXPECT_TRUE(find_program("").empty());
}

TEST_F(ProgramPathTest, NamesWithASlashAreTakenAsGiven) {
  const auto tool = make("a/tool", fs::perms::owner_all);
  ScopedPath path("/nonexistent");
  EXPECT_EQ(find_program(tool.string()), tool);
  EXPECT_TRUE(find_program((dir_.path() / "a/absent").string()).empty());
}

TEST_F(ProgramPathTest, SbinSearchAddsTheSystemSbinDirectories) {
  ScopedPath path((dir_.path() / "a").string());
  // `sh` lives in /bin or /usr/bin, never in the sbin dirs: the sbin search must not find it
  // when PATH does not hold it, while a tool only in an sbin dir is found.
  EXPECT_TRUE(find_program("sh", ProgramSearch::path_and_sbin).empty());
  const bool have_ldconfig = fs::exists("/sbin/ldconfig") || fs::exists("/usr/sbin/ldconfig");
  if (!have_ldconfig) GTEST_SKIP() << "no ldconfig in an sbin directory to look for";
  EXPECT_TRUE(find_program("ldconfig").empty());
  EXPECT_FALSE(find_program("ldconfig", ProgramSearch::path_and_sbin).empty());
}

}  // namespace
}  // namespace fcvm
