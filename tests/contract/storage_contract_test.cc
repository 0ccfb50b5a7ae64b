// The StorageBackend contract, checked against every storage plugin the build made.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <optional>

#include "fcvm/backend_wrapper.h"
#include "fcvm/storage.h"
#include "loop_filesystem.h"
#include "plugin_contract.h"

namespace fcvm::contract {
namespace {

namespace fs = std::filesystem;

const std::string kDigest = "sha256:" + std::string(64, 'c');

bool has_drive(const DiskLease& lease, const std::string& id) {
  return std::any_of(lease.drives.begin(), lease.drives.end(),
                     [&](const Drive& d) { return d.id == id; });
}

std::vector<std::string> drive_ids(const DiskLease& lease) {
  std::vector<std::string> ids;
  for (const auto& d : lease.drives) ids.push_back(d.id);
  return ids;
}

class StorageContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-storage-contract-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
    fs::path data_dir = dir_.path() / "data";
    // storage-btrfs needs its data dir on btrfs: give it a real one on a loop device.
    if (GetParam() == "storage-btrfs") {
      if (auto why = testing::LoopFilesystem::missing_prerequisite("btrfs"); !why.empty()) {
        GTEST_SKIP() << GetParam() << " needs a btrfs: " << why;
      }
      auto btrfs = testing::LoopFilesystem::create("btrfs", 512);
      ASSERT_TRUE(btrfs.ok()) << btrfs.status().message();
      btrfs_ = std::move(*btrfs);
      data_dir = btrfs_->mount_point() / "data";
    }
    auto storage = load<StorageBackend>(GetParam(), PluginKind::storage, data_dir);
    ASSERT_TRUE(storage.ok()) << storage.status().message();
    storage_ = std::move(*storage);
    const Probe probe = storage_->probe();
    if (!probe.available) GTEST_SKIP() << GetParam() << " cannot run here: " << probe.reason;
    rootfs_ = dir_.path() / "rootfs";
    fs::create_directories(rootfs_ / "etc");
    std::ofstream(rootfs_ / "etc/hostname") << "contract\n";
  }

  BaseImage base() {
    auto b = storage_->prepare_base({kDigest, rootfs_});
    EXPECT_TRUE(b.ok()) << b.status().message();
    return b.ok() ? *b : BaseImage{};
  }

  TempDir dir_;
  fs::path rootfs_;
  std::optional<testing::LoopFilesystem> btrfs_;
  std::shared_ptr<StorageBackend> storage_;  // declared last: released before the filesystem
};

TEST_P(StorageContract, PrepareBaseIsIdempotent) {
  BaseImage first = base();
  BaseImage second = base();
  EXPECT_EQ(first.digest, kDigest);
  EXPECT_EQ(first.path, second.path);
  EXPECT_TRUE(fs::exists(first.path));
}

TEST_P(StorageContract, DisksAreTheCallersUntilDestroyWhichIsIdempotent) {
  const fs::path vm_dir = dir_.path() / "vm";
  auto lease = storage_->create_disks(base(), vm_dir, DiskOptions{64});
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  EXPECT_EQ(lease->plugin, GetParam());
  ASSERT_FALSE(lease->drives.empty());
  for (const auto& d : lease->drives) EXPECT_TRUE(fs::exists(d.path)) << d.id;
  EXPECT_TRUE(has_drive(*lease, lease->root.lower_drive)) << lease->root.lower_drive;
  if (!lease->root.upper_drive.empty()) {
    EXPECT_TRUE(has_drive(*lease, lease->root.upper_drive));
  }

  ASSERT_TRUE(storage_->destroy(*lease).ok());
  for (const auto& d : lease->drives) {
    if (!d.read_only) {
      EXPECT_FALSE(fs::exists(d.path)) << d.id << " outlived destroy";
    }
  }
  EXPECT_TRUE(storage_->destroy(*lease).ok()) << "destroy must be idempotent";
  EXPECT_TRUE(fs::exists(base().path)) << "destroy must never remove the shared base";
}

TEST_P(StorageContract, FailedCreateLeavesNothing) {
  BaseImage gone{kDigest, dir_.path() / "no-such-base", 1};
  const fs::path vm_dir = dir_.path() / "vm";
  auto lease = storage_->create_disks(gone, vm_dir, DiskOptions{64});
  ASSERT_FALSE(lease.ok());
  EXPECT_TRUE(!fs::exists(vm_dir) || fs::is_empty(vm_dir));
}

TEST_P(StorageContract, DestroyRefusesAnotherPluginsLease) {
  auto lease = storage_->create_disks(base(), dir_.path() / "vm", DiskOptions{64});
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  DiskLease foreign = *lease;
  foreign.plugin = "storage-someone-else";
  EXPECT_EQ(storage_->destroy(foreign).code(), Errc::invalid_argument);
  for (const auto& d : lease->drives) EXPECT_TRUE(fs::exists(d.path));
  EXPECT_TRUE(storage_->destroy(*lease).ok());
}

TEST_P(StorageContract, ClonesKeepTheSnapshotsDriveIdsAndOrder) {
  auto vm = storage_->create_disks(base(), dir_.path() / "vm", DiskOptions{64});
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  auto snap = storage_->snapshot_disks(*vm, dir_.path() / "snap");
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  auto clone = storage_->clone_disks(*snap, dir_.path() / "clone");
  ASSERT_TRUE(clone.ok()) << clone.status().message();
  EXPECT_EQ(drive_ids(*clone), drive_ids(*vm));
  EXPECT_EQ(drive_ids(*snap), drive_ids(*vm));
  for (std::size_t i = 0; i < clone->drives.size(); ++i) {
    EXPECT_EQ(clone->drives[i].path.filename(), snap->drives[i].path.filename());
  }
  for (const DiskLease* l : {&*clone, &*snap, &*vm}) EXPECT_TRUE(storage_->destroy(*l).ok());
}

// A forwarding wrapper keeps the plugin real except for the one call a test overrides.
class RefusingCreate final : public StorageBackendWrapper {
 public:
  using StorageBackendWrapper::StorageBackendWrapper;
  Result<DiskLease> create_disks(const BaseImage&, const fs::path&, const DiskOptions&) override {
    return error(Errc::io, "injected create_disks failure");
  }
};

TEST_P(StorageContract, WrapperForwardsEverythingButTheOverriddenCall) {
  RefusingCreate wrapped(storage_);
  auto b = wrapped.prepare_base({kDigest, rootfs_});
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_TRUE(fs::exists(b->path));
  EXPECT_EQ(wrapped.create_disks(*b, dir_.path() / "vm", {}).status().message(),
            "injected create_disks failure");
  EXPECT_FALSE(fs::exists(dir_.path() / "vm"));
}

INSTANTIATE_TEST_SUITE_P(Plugins, StorageContract,
                         ::testing::ValuesIn(plugins_of(PluginKind::storage)), param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(StorageContract);

}  // namespace
}  // namespace fcvm::contract
