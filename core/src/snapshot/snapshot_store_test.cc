#include "snapshot/snapshot_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>


namespace fcvm {
namespace {

namespace fs = std::filesystem;

class SnapshotStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create(fs::temp_directory_path(), "fcvm-snapstore-");
    ASSERT_TRUE(dir.ok());
    data_ = std::move(*dir);
  }
  SnapshotManifest manifest(const std::string& tag) {
    SnapshotManifest m;
    m.tag = tag;
    m.state_file = "state";
    m.memory_file = "mem";
    m.disks.plugin = "storage-squashfs";
    m.disks.drives = {Drive{"root", "/bases/x.sqfs", true}, Drive{"scratch", "scratch.ext4", false}};
    m.main_process.args = {"sh"};
    m.plugins[PluginKind::vmm] = "vmm-qemu";
    m.boot_id = "b1";
    m.vmm_version = "0.1.0";
    m.machine = GuestMachine{2, 512, "/k/vmlinux", "/k/initrd", "sha256:ab"};
    return m;
  }
  TempDir data_;
};

TEST_F(SnapshotStoreTest, ManifestRoundTripsAndResolvesPathsInItsDirectory) {
  auto m = manifest("t");
  m.network = NetworkLease{};
  auto back = snapshot_manifest_from_json(to_json(m));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->tag, "t");
  EXPECT_EQ(back->plugins.at(PluginKind::vmm), "vmm-qemu");
  EXPECT_EQ(back->vmm_version, "0.1.0");
  EXPECT_EQ(back->machine, m.machine);
  EXPECT_TRUE(back->network.has_value());
  EXPECT_EQ(back->files("/s/t").memory, fs::path("/s/t/mem"));
  auto disks = back->disks_in("/s/t");
  EXPECT_EQ(disks.drives[0].path, fs::path("/bases/x.sqfs"));  // absolute stays
  EXPECT_EQ(disks.drives[1].path, fs::path("/s/t/scratch.ext4"));
}

TEST_F(SnapshotStoreTest, VersionOneManifestsReadWithoutTheMachine) {
  auto j = to_json(manifest("t"));
  j["version"] = 1;
  j.erase("machine");
  j.erase("vmm_version");
  auto back = snapshot_manifest_from_json(j);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->machine, GuestMachine{});
  j = to_json(manifest("t"));
  j["machine"]["vcpus"] = "two";
  auto typed = snapshot_manifest_from_json(j);
  ASSERT_FALSE(typed.ok());
  EXPECT_NE(typed.status().message().find("vcpus"), std::string::npos);
}

TEST_F(SnapshotStoreTest, ManifestRefusesNewerVersionsAndPathsOutsideTheSnapshot) {
  auto j = to_json(manifest("t"));
  j["version"] = SnapshotManifest::kVersion + 1;
  auto newer = snapshot_manifest_from_json(j);
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.status().message().find("upgrade fcvm"), std::string::npos);
  j = to_json(manifest("t"));
  j["memory_file"] = "../../etc/shadow";
  EXPECT_FALSE(snapshot_manifest_from_json(j).ok());
  j = to_json(manifest("t"));
  j["pause_ms"] = "slow";
  auto typed = snapshot_manifest_from_json(j);
  ASSERT_FALSE(typed.ok());
  EXPECT_NE(typed.status().message().find("pause_ms"), std::string::npos);
}

TEST_F(SnapshotStoreTest, BuiltSnapshotIsInvisibleUntilCommittedAndCommitNeverOverwrites) {
  SnapshotStore store(data_.path());
  auto building = store.begin("t");
  ASSERT_TRUE(building.ok()) << building.status().message();
  ASSERT_TRUE(write_snapshot_manifest(building->path(), manifest("t")).ok());
  EXPECT_TRUE(store.list().empty());
  ASSERT_TRUE(store.commit(*building, "t").ok());
  auto listed = store.list();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].manifest.tag, "t");
  struct stat st{};
  ASSERT_EQ(::stat(store.dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  EXPECT_EQ(store.begin("t").status().code(), Errc::already_exists);
  ASSERT_TRUE(store.remove("t").ok());
  EXPECT_EQ(store.get("t").status().code(), Errc::not_found);
  EXPECT_TRUE(fs::is_empty(store.dir()));
}

TEST_F(SnapshotStoreTest, AbandonedBuildLeavesNothing) {
  SnapshotStore store(data_.path());
  {
    auto building = store.begin("gone");
    ASSERT_TRUE(building.ok());
    ASSERT_TRUE(write_snapshot_manifest(building->path(), manifest("gone")).ok());
  }
  EXPECT_TRUE(fs::is_empty(store.dir()));
}

TEST_F(SnapshotStoreTest, BadTagsAreRefusedWithTheRule) {
  SnapshotStore store(data_.path());
  for (const char* tag : {"", "../x", "Upper", ".hidden", "a/b"}) {
    auto r = store.begin(tag);
    ASSERT_FALSE(r.ok()) << tag;
    EXPECT_NE(r.status().message().find("[a-z0-9]"), std::string::npos);
  }
}

}  // namespace
}  // namespace fcvm
