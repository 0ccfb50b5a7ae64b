// storage-btrfs as the host sees it: fcvm-storage-btrfs.so through the real plugin loader,
// on a data dir on btrfs, through the StorageBackend life cycle.
#include <gtest/gtest.h>

#include <fstream>

#include "fcvm/storage.h"
#include "loop_filesystem.h"
#include "plugin/plugin_registry.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

TEST(BtrfsThroughTheLoader, LifeCycleOfADisk) {
  if (auto why = testing::LoopFilesystem::missing_prerequisite("btrfs"); !why.empty()) GTEST_SKIP() << why;
  const fs::path plugin_dir = fs::path(FCVM_BINARY_DIR) / "lib" / "fcvm" / "plugins";
  ASSERT_TRUE(fs::exists(plugin_dir / "fcvm-storage-btrfs.so")) << "not built in " << plugin_dir;
  auto btrfs = testing::LoopFilesystem::create("btrfs", 512);
  ASSERT_TRUE(btrfs.ok()) << btrfs.status().message();
  const fs::path data = btrfs->mount_point() / "data";

  PluginRegistry registry({plugin_dir}, null_logger());
  auto refused = registry.create_as<StorageBackend>("storage-btrfs", PluginKind::storage,
                                                    {null_logger(), {{"reflink", "never"}}, data});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("reflink"), std::string::npos) << refused.status().message();

  auto storage = registry.create_as<StorageBackend>("storage-btrfs", PluginKind::storage,
                                                    {null_logger(), {{"headroom_mib", 16}}, data});
  ASSERT_TRUE(storage.ok()) << storage.status().message();
  Probe probe = (*storage)->probe();
  ASSERT_TRUE(probe.available) << probe.reason;
  auto done = (*storage)->setup_host();
  ASSERT_TRUE(done.ok()) << done.status().message();

  fs::create_directories(btrfs->mount_point() / "rootfs");
  std::ofstream(btrfs->mount_point() / "rootfs" / "hostname") << "loader\n";
  auto base = (*storage)->prepare_base({"sha256:" + std::string(64, 'b'), btrfs->mount_point() / "rootfs"});
  ASSERT_TRUE(base.ok()) << base.status().message();
  auto vm = (*storage)->create_disks(*base, data / "vms" / "a", {});
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  EXPECT_EQ(vm->plugin, "storage-btrfs");
  EXPECT_EQ(vm->root.mode, RootPlan::Mode::direct);
  auto snap = (*storage)->snapshot_disks(*vm, data / "snapshots" / "s");
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  auto clone = (*storage)->clone_disks(*snap, data / "vms" / "b");
  ASSERT_TRUE(clone.ok()) << clone.status().message();
  for (const auto* lease : {&*vm, &*snap, &*clone}) {
    EXPECT_TRUE(fs::exists(lease->drives.at(0).path));
    ASSERT_TRUE((*storage)->destroy(*lease).ok());
    EXPECT_FALSE(fs::exists(lease->drives.at(0).path));
    EXPECT_TRUE((*storage)->destroy(*lease).ok()) << "idempotent";
  }
  EXPECT_TRUE(fs::exists(base->path));
}

}  // namespace
}  // namespace fcvm
