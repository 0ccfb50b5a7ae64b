#include "fcvm/temp_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

namespace fcvm {
namespace {

namespace fs = std::filesystem;

TEST(TempDir, CreatesAPrivateDirectoryAndRemovesItWithItsContents) {
  fs::path path;
  {
    auto dir = TempDir::create("fcvm-temp-dir-test-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    path = dir->path();
    EXPECT_EQ(path.parent_path(), fs::temp_directory_path());
    EXPECT_EQ(path.filename().string().rfind("fcvm-temp-dir-test-", 0), 0u);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    fs::create_directories(path / "a/b");
    std::ofstream(path / "a/b/file") << "x";
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(TempDir, MoveTransfersOwnershipAndRemoveIsIdempotent) {
  auto made = TempDir::create("fcvm-temp-dir-test-");
  ASSERT_TRUE(made.ok());
  TempDir moved = std::move(*made);
  const fs::path path = moved.path();
  EXPECT_TRUE(made->path().empty());
  EXPECT_TRUE(fs::exists(path));
  moved.remove();
  moved.remove();
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(moved.path().empty());
}

TEST(TempDir, AssigningOverALiveDirectoryRemovesIt) {
  auto first = TempDir::create("fcvm-temp-dir-test-");
  auto second = TempDir::create("fcvm-temp-dir-test-");
  ASSERT_TRUE(first.ok() && second.ok());
  const fs::path old_path = first->path();
  *first = std::move(*second);
  EXPECT_FALSE(fs::exists(old_path));
  EXPECT_TRUE(fs::exists(first->path()));
}

TEST(TempDir, FailsWithTheParentInTheMessage) {
  auto dir = TempDir::create("/nonexistent-fcvm-parent", "x-");
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("/nonexistent-fcvm-parent"), std::string::npos);
}

TEST(TempDir, RemoveStaleSparesLiveDirectoriesAndOthersFiles) {
  auto parent = TempDir::create("fcvm-temp-dir-test-");
  ASSERT_TRUE(parent.ok());
  auto live = TempDir::create(parent->path(), "tmp-");
  ASSERT_TRUE(live.ok());
  fs::create_directory(parent->path() / "tmp-crashed");   // nobody holds its lock
  fs::create_directory(parent->path() / "other-keep");    // another prefix
  TempDir::remove_stale(parent->path(), "tmp-");
  EXPECT_TRUE(fs::exists(live->path()));
  EXPECT_FALSE(fs::exists(parent->path() / "tmp-crashed"));
  EXPECT_TRUE(fs::exists(parent->path() / "other-keep"));
}

}  // namespace
}  // namespace fcvm
