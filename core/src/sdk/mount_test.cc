#include "fcvm/mount.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "fcvm/unique_fd.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
    auto dir = TempDir::create(std::filesystem::temp_directory_path(), "fcvm-mount-test-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
    target_ = dir_.path() / "mnt";
    std::filesystem::create_directory(target_);
  }
  bool mounted() {
    auto m = is_mount_point(target_);
    EXPECT_TRUE(m.ok()) << m.status().message();
    return m.ok() && *m;
  }
  TempDir dir_;
  std::filesystem::path target_;
};

TEST_F(MountTest, UnmountsOnDestruction) {
  {
    auto m = Mount::create("fcvm-test", target_, "tmpfs", 0, "size=1m");
    ASSERT_TRUE(m.ok()) << m.status().message();
    EXPECT_TRUE(mounted());
    std::ofstream(target_ / "f") << "x";
  }
  EXPECT_FALSE(mounted());
  EXPECT_FALSE(std::filesystem::exists(target_ / "f"));
}

TEST_F(MountTest, BusyMountIsDetachedLazily) {
  auto m = Mount::create("fcvm-test", target_, "tmpfs", 0, "size=1m");
  ASSERT_TRUE(m.ok()) << m.status().message();
  UniqueFd busy(::open((target_ / "held").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(busy);
  ASSERT_TRUE(m->unmount().ok());
  EXPECT_FALSE(m->mounted());
  EXPECT_FALSE(mounted());
  // The open file still works: the detached filesystem lives until its last user leaves.
  EXPECT_EQ(::write(busy.get(), "x", 1), 1);
  EXPECT_TRUE(m->unmount().ok());  // idempotent
}

TEST_F(MountTest, ReleaseLeavesItMountedAndAdoptTakesItBack) {
  std::filesystem::path released;
  {
    auto m = Mount::create("fcvm-test", target_, "tmpfs", 0, "size=1m");
    ASSERT_TRUE(m.ok()) << m.status().message();
    released = m->release();
  }
  EXPECT_EQ(released, target_);
  EXPECT_TRUE(mounted());
  { Mount adopted = Mount::adopt(target_); }
  EXPECT_FALSE(mounted());
}

TEST_F(MountTest, FailedMountNamesTheTargetAndMountsNothing) {
  auto m = Mount::create("/nonexistent-device", target_, "ext4");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find(target_.string()), std::string::npos) << m.status().message();
  EXPECT_FALSE(mounted());
}

TEST(IsMountPoint, TellsMountRootsFromDirectories) {
  auto root = is_mount_point("/");
  ASSERT_TRUE(root.ok()) << root.status().message();
  EXPECT_TRUE(*root);
  auto proc = is_mount_point("/proc/self");
  ASSERT_TRUE(proc.ok());
  EXPECT_FALSE(*proc);
  EXPECT_EQ(is_mount_point("/nonexistent/path").status().code(), Errc::not_found);
}

}  // namespace
}  // namespace fcvm
