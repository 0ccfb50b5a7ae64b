// `fcvm podman run --storage storage-btrfs` against real microVMs, on a data dir that is not
// btrfs: `fcvm setup storage` makes the loop-mounted volume first.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <set>
#include <sstream>

#include "fcvm/loop_device.h"
#include "fcvm/mount.h"
#include "fcvm_cli.h"

namespace fcvm::test {
namespace {

namespace fs = std::filesystem;

// Mount points at or under `dir`, from /proc/self/mountinfo.
std::vector<std::string> mounts_under(const fs::path& dir) {
  std::vector<std::string> found;
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point;
    fields >> id >> parent >> devno >> root >> point;
    if (point.rfind(dir.string(), 0) == 0) found.push_back(point);
  }
  return found;
}

// Loop devices whose backing file is under `dir`.
std::set<std::string> loop_backings_under(const fs::path& dir) {
  std::set<std::string> found;
  for (const auto& e : fs::directory_iterator("/sys/block")) {
    std::ifstream in(e.path() / "loop" / "backing_file");
    std::string backing;
    if (std::getline(in, backing) && backing.rfind(dir.string(), 0) == 0) found.insert(backing);
  }
  return found;
}

class BtrfsStorageE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!FcvmCli::missing_prerequisite().empty() || ::access("/usr/sbin/mkfs.btrfs", X_OK) != 0) return;
    cli_ = new FcvmCli();
    setup_ = cli_->run({"setup", "storage"});
  }
  static void TearDownTestSuite() {
    if (cli_ == nullptr) return;
    (void)cli_->run({"gc"});
    const fs::path volume = cli_->data_dir() / "btrfs";
    if (auto m = is_mount_point(volume); m.ok() && *m) {
      EXPECT_TRUE(Mount::adopt(volume).unmount().ok());
    }
    EXPECT_TRUE(loop_backings_under(cli_->data_dir()).empty()) << "the volume's loop device stayed";
    delete cli_;
    cli_ = nullptr;
  }
  void SetUp() override {
    if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
    if (cli_ == nullptr) GTEST_SKIP() << "mkfs.btrfs is not installed (apt-get install btrfs-progs)";
    ASSERT_EQ(setup_.code, 0) << setup_.err;
  }
  std::vector<std::string> run_args(std::vector<std::string> args) const {
    // --no-snapshot: these tests count the disks of runs; a startup snapshot keeps one.
    args.insert(args.begin(), {"podman", "run", "--storage", "storage-btrfs", "--no-snapshot", "--kernel",
                               FcvmCli::kernel().string()});
    return args;
  }

  static inline FcvmCli* cli_ = nullptr;
  static inline CliResult setup_;
};

TEST_F(BtrfsStorageE2eTest, SetupStorageMountsAVolumeAndIsIdempotent) {
  EXPECT_NE(setup_.out.find("created"), std::string::npos) << setup_.out;
  EXPECT_EQ(mounts_under(cli_->data_dir()), std::vector<std::string>{(cli_->data_dir() / "btrfs").string()});
  auto again = cli_->run({"setup", "storage"});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.out.find("mounted at"), std::string::npos) << again.out;
  EXPECT_EQ(loop_backings_under(cli_->data_dir()).size(), 1u);
}

// The guest's root is its own read-write ext4 disk, a reflink of the image's base.
TEST_F(BtrfsStorageE2eTest, ContainerRunsOnAWritableExt4Root) {
  auto r = cli_->run(run_args({"--rm", FcvmCli::hello_image(), "sh", "-c",
                               "echo written > /new-file && cat /new-file && grep ' / ' /proc/mounts"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("written\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" / ext4 rw"), std::string::npos) << r.out;
  EXPECT_TRUE(cli_->ls().empty()) << "--rm left a record";
  // The base stays; the VM's disk went with it.
  EXPECT_FALSE(fs::is_empty(cli_->data_dir() / "btrfs" / "bases"));
  EXPECT_TRUE(!fs::exists(cli_->data_dir() / "btrfs" / "disks") ||
              fs::is_empty(cli_->data_dir() / "btrfs" / "disks"));
}

// A startup snapshot's disk lives in the volume, outside the snapshot's directory: removing
// the snapshot removes it too.
TEST_F(BtrfsStorageE2eTest, RemovingAStartupSnapshotRemovesItsDisk) {
  auto r = cli_->run({"podman", "run", "--storage", "storage-btrfs", "--kernel", FcvmCli::kernel().string(), "--rm",
                      FcvmCli::hello_image(), "echo", "cached"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto disks = cli_->data_dir() / "btrfs" / "disks";
  ASSERT_TRUE(fs::exists(disks) && !fs::is_empty(disks)) << "the startup snapshot keeps a disk";
  auto gc = cli_->run({"gc", "--cache"});
  ASSERT_EQ(gc.code, 0) << gc.out << gc.err;
  EXPECT_NE(gc.out.find("removed startup snapshot cache-"), std::string::npos) << gc.out;
  EXPECT_TRUE(fs::is_empty(disks));
}

// After kill -9 of fcvm, gc removes the VM's disk and leaves only the volume, which fcvm
// still uses: no other loop device, no other mount.
TEST_F(BtrfsStorageE2eTest, GcAfterKillLeavesOnlyTheVolume) {
  auto fg = cli_->start(run_args({"--name", "killed", FcvmCli::hello_image(), "sleep", "600"}));
  ASSERT_TRUE(cli_->wait_status("killed", "running", std::chrono::seconds(120)));
  const auto disks = cli_->data_dir() / "btrfs" / "disks";
  ASSERT_FALSE(fs::is_empty(disks));
  fg.kill();  // SIGKILL: no cleanup of its own
  auto gc = cli_->run({"gc"});
  ASSERT_EQ(gc.code, 0) << gc.out << gc.err;
  EXPECT_NE(gc.out.find("disks (storage-btrfs)"), std::string::npos) << gc.out;
  EXPECT_TRUE(fs::is_empty(disks));
  EXPECT_EQ(mounts_under(cli_->data_dir()), std::vector<std::string>{(cli_->data_dir() / "btrfs").string()});
  EXPECT_EQ(loop_backings_under(cli_->data_dir()),
            std::set<std::string>{(cli_->data_dir() / "storage-btrfs" / "volume.btrfs").string()});
}

}  // namespace
}  // namespace fcvm::test
