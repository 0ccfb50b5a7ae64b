#include "fcvm/loop_device.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "fcvm/child_process.h"
#include "fcvm/mount.h"
#include "fcvm/temp_dir.h"
#include "loop_filesystem.h"

namespace fcvm {
namespace {

class LoopDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = testing::LoopFilesystem::missing_prerequisite("ext4"); !why.empty())
      GTEST_SKIP() << why;
    auto dir = TempDir::create(std::filesystem::temp_directory_path(), "fcvm-loop-test-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
    file_ = dir_.path() / "disk.img";
    UniqueFd fd(::open(file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), 16 << 20), 0);
  }
  TempDir dir_;
  std::filesystem::path file_;
};

TEST_F(LoopDeviceTest, AttachesAndDetachesOnDestruction) {
  std::filesystem::path device;
  {
    auto loop = LoopDevice::attach(file_);
    ASSERT_TRUE(loop.ok()) << loop.status().message();
    device = loop->device();
    EXPECT_EQ(loop_devices_backed_by(file_), std::vector<std::filesystem::path>{device});
  }
  EXPECT_TRUE(loop_devices_backed_by(file_).empty()) << device;
}

TEST_F(LoopDeviceTest, DetachIsIdempotent) {
  auto loop = LoopDevice::attach(file_);
  ASSERT_TRUE(loop.ok()) << loop.status().message();
  ASSERT_TRUE(loop->detach().ok());
  EXPECT_FALSE(loop->attached());
  EXPECT_TRUE(loop->detach().ok());
  EXPECT_TRUE(loop_devices_backed_by(file_).empty());
}

TEST_F(LoopDeviceTest, TwoAttachmentsGetTwoDevices) {
  auto a = LoopDevice::attach(file_, /*read_only=*/true);
  auto b = LoopDevice::attach(file_, /*read_only=*/true);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->device(), b->device());
  EXPECT_EQ(loop_devices_backed_by(file_).size(), 2u);
}

// Autoclear: a released device stays while mounted and goes with the mount.
TEST_F(LoopDeviceTest, ReleasedDeviceLivesAsLongAsItsMount) {
  ASSERT_TRUE(run_command({"/usr/sbin/mkfs.ext4", "-q", "-F", file_.string()}).ok());
  auto loop = LoopDevice::attach(file_);
  ASSERT_TRUE(loop.ok()) << loop.status().message();
  const auto target = dir_.path() / "mnt";
  std::filesystem::create_directory(target);
  auto mount = Mount::create(loop->device(), target, "ext4");
  ASSERT_TRUE(mount.ok()) << mount.status().message();
  loop->release();
  EXPECT_EQ(loop_devices_backed_by(file_).size(), 1u);
  ASSERT_TRUE(mount->unmount().ok());
  EXPECT_TRUE(loop_devices_backed_by(file_).empty());
}

TEST_F(LoopDeviceTest, ReleasedUnusedDeviceIsDetachedAtOnce) {
  auto loop = LoopDevice::attach(file_);
  ASSERT_TRUE(loop.ok()) << loop.status().message();
  loop->release();
  EXPECT_TRUE(loop_devices_backed_by(file_).empty());
}

TEST_F(LoopDeviceTest, MissingFileIsAnErrorNamingIt) {
  auto loop = LoopDevice::attach(dir_.path() / "absent.img");
  ASSERT_FALSE(loop.ok());
  EXPECT_NE(loop.status().message().find("absent.img"), std::string::npos);
}

// Loop devices belong to the whole host: another process may remove the free device
// attach() was given before it opens it. attach() asks for another one.
TEST_F(LoopDeviceTest, AttachSurvivesFreeDevicesRemovedByAnotherProcess) {
  std::atomic<bool> done{false};
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(control) << "open /dev/loop-control";
  // Only free devices can be removed (a bound or open one is EBUSY): nobody else loses one.
  std::thread remover([&] {
    while (!done) {
      const int index = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
      if (index >= 0) ::ioctl(control.get(), LOOP_CTL_REMOVE, index);  // EBUSY once taken
    }
  });
  int failures = 0;
  std::string last_error;
  for (int i = 0; i < 2000; ++i) {
    auto loop = LoopDevice::attach(file_);
    if (!loop.ok()) {
      ++failures;
      last_error = loop.status().message();
    }
  }
  done = true;
  remover.join();
  EXPECT_EQ(failures, 0) << last_error;
  EXPECT_TRUE(loop_devices_backed_by(file_).empty());
}

TEST(LoopFilesystemTest, BtrfsIsMountedAndCleanedUp) {
  if (auto why = testing::LoopFilesystem::missing_prerequisite("btrfs"); !why.empty())
    GTEST_SKIP() << why;
  std::filesystem::path image, mount_point;
  {
    auto fs = testing::LoopFilesystem::create("btrfs", 128);
    ASSERT_TRUE(fs.ok()) << fs.status().message();
    image = fs->image();
    mount_point = fs->mount_point();
    EXPECT_TRUE(*is_mount_point(mount_point));
  }
  EXPECT_TRUE(loop_devices_backed_by(image).empty());
  EXPECT_FALSE(std::filesystem::exists(mount_point));
}

}  // namespace
}  // namespace fcvm
