#include "fcvm/path_beneath.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <fstream>

#include "fcvm/mount.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

class PathBeneathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = TempDir::create("fcvm-beneath-");
    ASSERT_TRUE(t.ok());
    tmp_ = std::move(*t);
    root_ = tmp_.path() / "root";
    outside_ = tmp_.path() / "outside";
    fs::create_directories(root_ / "vms" / "a" / "sub");
    fs::create_directories(outside_);
    touch(outside_ / "victim");
  }
  static void touch(const fs::path& p) { std::ofstream(p) << "x"; }

  TempDir tmp_;
  fs::path root_, outside_;
};

TEST_F(PathBeneathTest, RemovesATreeAndIsIdempotent) {
  touch(root_ / "vms" / "a" / "f");
  touch(root_ / "vms" / "a" / "sub" / "g");
  fs::create_symlink(outside_, root_ / "vms" / "a" / "sub" / "to-outside");
  ASSERT_TRUE(remove_all_beneath(root_, root_ / "vms" / "a").ok());
  EXPECT_FALSE(fs::exists(root_ / "vms" / "a"));
  EXPECT_TRUE(fs::exists(outside_ / "victim"));  // the symlink went, not what it named
  EXPECT_TRUE(remove_all_beneath(root_, root_ / "vms" / "a").ok());
  EXPECT_TRUE(remove_beneath(root_, root_ / "vms" / "a" / "f").ok());
  EXPECT_TRUE(remove_beneath(root_, "vms/gone/x").ok());  // relative paths are beneath root
}

TEST_F(PathBeneathTest, RefusesPathsOutsideTheRoot) {
  for (const fs::path& p : {outside_ / "victim", root_ / ".." / "outside" / "victim", fs::path("../outside/victim"),
                            root_, fs::path("/etc/passwd")}) {
    const Status a = remove_beneath(root_, p);
    const Status b = remove_all_beneath(root_, p);
    EXPECT_EQ(a.code(), Errc::invalid_argument) << p << ": " << a.message();
    EXPECT_EQ(b.code(), Errc::invalid_argument) << p << ": " << b.message();
    EXPECT_NE(a.message().find("not beneath"), std::string::npos) << a.message();
  }
  EXPECT_TRUE(fs::exists(outside_ / "victim"));
  EXPECT_TRUE(fs::exists(root_ / "vms"));
}

TEST_F(PathBeneathTest, RefusesASymlinkInAnyComponent) {
  fs::create_symlink(outside_, root_ / "link");
  fs::create_symlink("../../outside", root_ / "vms" / "rel");
  for (const fs::path& p : {root_ / "link" / "victim", root_ / "vms" / "rel" / "victim"}) {
    const Status a = remove_beneath(root_, p);
    EXPECT_EQ(a.code(), Errc::invalid_argument) << p << ": " << a.message();
    EXPECT_NE(a.message().find("symlink"), std::string::npos) << a.message();
    EXPECT_EQ(remove_all_beneath(root_, p).code(), Errc::invalid_argument) << p;
    EXPECT_EQ(open_beneath(root_, p, O_RDONLY).status().code(), Errc::invalid_argument) << p;
  }
  EXPECT_TRUE(fs::exists(outside_ / "victim"));
  // A symlink as the last component is itself removed, and never opened or written through.
  EXPECT_EQ(open_beneath(root_, root_ / "link", O_WRONLY | O_CREAT, 0600).status().code(), Errc::invalid_argument);
  ASSERT_TRUE(remove_beneath(root_, root_ / "link").ok());
  EXPECT_FALSE(fs::exists(fs::symlink_status(root_ / "link")));
  EXPECT_TRUE(fs::exists(outside_ / "victim"));
}

TEST_F(PathBeneathTest, OpensAndCreatesBeneath) {
  auto fd = open_beneath(root_, root_ / "vms" / "a" / "new", O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_TRUE(fs::exists(root_ / "vms" / "a" / "new"));
  EXPECT_EQ(open_beneath(root_, root_ / "vms" / "missing", O_RDONLY).status().code(), Errc::not_found);
}

TEST_F(PathBeneathTest, DoesNotCrossIntoAMount) {
  if (::geteuid() != 0) GTEST_SKIP() << "SKIPPED: needs root to mount a tmpfs";
  const fs::path mnt = root_ / "vms" / "a" / "sub";
  auto tmpfs = Mount::create("tmpfs", mnt, "tmpfs", 0, "size=1m");
  ASSERT_TRUE(tmpfs.ok()) << tmpfs.status().message();
  touch(mnt / "kept");
  const Status st = remove_all_beneath(root_, root_ / "vms" / "a");
  EXPECT_EQ(st.code(), Errc::io);
  EXPECT_NE(st.message().find("is a mount point"), std::string::npos) << st.message();
  EXPECT_TRUE(fs::exists(mnt / "kept"));
  EXPECT_EQ(remove_all_beneath(root_, mnt).code(), Errc::io);
  ASSERT_TRUE(tmpfs->unmount().ok());
  // A bind mount of a directory on the same file system: same st_dev, still a mount.
  touch(outside_ / "bound");
  auto bind = Mount::create(outside_, mnt, "", MS_BIND);
  ASSERT_TRUE(bind.ok()) << bind.status().message();
  const Status bound = remove_all_beneath(root_, root_ / "vms" / "a");
  EXPECT_NE(bound.message().find("is a mount point"), std::string::npos) << bound.message();
  EXPECT_TRUE(fs::exists(outside_ / "bound"));
  EXPECT_TRUE(fs::exists(outside_ / "victim"));
  ASSERT_TRUE(bind->unmount().ok());
  EXPECT_TRUE(remove_all_beneath(root_, root_ / "vms" / "a").ok());
}

}  // namespace
}  // namespace fcvm
