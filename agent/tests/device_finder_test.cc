#include "device_finder.h"

#include <gtest/gtest.h>

#include <fstream>

#include "test_dir.h"

namespace fcvm::agent {
namespace {

void write(const std::filesystem::path& p, const std::string& content) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << content;
}

TEST(DeviceFinder, DiskLettersFollowTheKernel) {
  EXPECT_EQ(DeviceFinder::disk_letters(0), "a");
  EXPECT_EQ(DeviceFinder::disk_letters(25), "z");
  EXPECT_EQ(DeviceFinder::disk_letters(26), "aa");
  EXPECT_EQ(DeviceFinder::disk_letters(27), "ab");
  EXPECT_EQ(DeviceFinder::disk_letters(701), "zz");
}

TEST(DeviceFinder, FindsVirtioPortByName) {
  TestDir t;
  write(t.path() / "sys/class/virtio-ports/vport0p0/name", "org.qemu.guest_agent.0\n");
  write(t.path() / "sys/class/virtio-ports/vport1p1/name", "fcvm.agent\n");
  write(t.path() / "dev/vport1p1", "");
  DeviceFinder f(t.path() / "sys", t.path() / "dev");
  EXPECT_EQ(f.virtio_port("fcvm.agent"), t.path() / "dev/vport1p1");
  EXPECT_FALSE(f.virtio_port("other"));
}

TEST(DeviceFinder, PortWithoutDeviceNodeIsNotFoundYet) {
  TestDir t;
  write(t.path() / "sys/class/virtio-ports/vport1p1/name", "fcvm.agent\n");
  DeviceFinder f(t.path() / "sys", t.path() / "dev");
  EXPECT_FALSE(f.virtio_port("fcvm.agent"));
}

TEST(DeviceFinder, PrefersSerialOverIndex) {
  TestDir t;
  write(t.path() / "sys/block/vda/serial", "scratch");
  write(t.path() / "sys/block/vdb/serial", "root");
  write(t.path() / "sys/block/sda/serial", "root");
  write(t.path() / "dev/vda", "");
  write(t.path() / "dev/vdb", "");
  DeviceFinder f(t.path() / "sys", t.path() / "dev");
  EXPECT_EQ(f.block_device({"root", 0, "ext4"}), t.path() / "dev/vdb");
  EXPECT_EQ(f.block_device({"scratch", 1, "ext4"}), t.path() / "dev/vda");
}

TEST(DeviceFinder, FallsBackToIndexWithoutSerials) {
  TestDir t;
  write(t.path() / "sys/block/vda/size", "8");
  write(t.path() / "dev/vda", "");
  write(t.path() / "dev/vdb", "");
  DeviceFinder f(t.path() / "sys", t.path() / "dev");
  EXPECT_EQ(f.block_device({"root", 0, "squashfs"}), t.path() / "dev/vda");
  EXPECT_EQ(f.block_device({"scratch", 1, "ext4"}), t.path() / "dev/vdb");
  EXPECT_FALSE(f.block_device({"missing", 2, "ext4"}));
}

TEST(DeviceFinder, FindsInterfaceByMac) {
  TestDir t;
  write(t.path() / "sys/class/net/lo/address", "00:00:00:00:00:00\n");
  write(t.path() / "sys/class/net/enp0s1/address", "02:fc:00:00:00:02\n");
  DeviceFinder f(t.path() / "sys", t.path() / "dev");
  EXPECT_EQ(f.interface_by_mac("02:fc:00:00:00:02"), "enp0s1");
  EXPECT_FALSE(f.interface_by_mac("02:fc:00:00:00:03"));
}

TEST(DeviceFinder, WaitForGivesUpAfterTimeout) {
  int calls = 0;
  auto r = DeviceFinder::wait_for([&]() -> std::optional<int> {
    ++calls;
    return calls == 3 ? std::optional<int>(7) : std::nullopt;
  }, std::chrono::milliseconds(1000));
  EXPECT_EQ(r, 7);
  auto none = DeviceFinder::wait_for([]() -> std::optional<int> { return std::nullopt; },
                                     std::chrono::milliseconds(30));
  EXPECT_FALSE(none);
}

}  // namespace
}  // namespace fcvm::agent
