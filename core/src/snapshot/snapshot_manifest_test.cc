#include "snapshot/snapshot_manifest.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "fcvm/atomic_file.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

SnapshotManifest sample() {
  SnapshotManifest m;
  m.vmm = {"vmm-qemu", "0.1.0"};
  m.memory_plugin = "file";
  m.vcpus = 2;
  m.memory_mib = 256;
  m.cmdline = "console=ttyS0 quiet";
  m.files = {"state", "mem"};
  DiskLease disks;
  disks.plugin = "storage-squashfs";
  disks.drives = {Drive{"root", "/snap/rootfs.sqfs", true}, Drive{"scratch", "/snap/scratch.ext4", false}};
  disks.root.lower_drive = "root";
  m.disks = disks;
  NetworkLease net;
  net.plugin = "network-bridged";
  net.tap = "tap0";
  net.guest.address = "10.0.2.15/24";
  m.network = net;
  m.image_reference = "oci:/images/hello:latest";
  m.image_digest = "sha256:" + std::string(64, 'a');
  m.kernel = "/var/lib/fcvm/kernels/k/vmlinux";
  m.kernel_sha256 = std::string(64, 'b');
  m.initrd = "/var/lib/fcvm/initramfs/i/initrd.gz";
  m.agent_protocol = 2;
  m.boot_id = std::string(32, 'c');
  m.created = "2026-11-29T12:00:00Z";
  return m;
}

class SnapshotManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-manifest-test-");
    ASSERT_TRUE(dir.ok());
    dir_ = std::move(*dir);
  }
  fs::path file() const { return dir_.path() / SnapshotManifest::kFileName; }
  TempDir dir_;
};

TEST_F(SnapshotManifestTest, RoundTripsThroughAPrivateFile) {
  ASSERT_TRUE(write_snapshot_manifest(dir_.path(), sample()).ok());
  struct stat st {};
  ASSERT_EQ(::stat(file().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto back = read_snapshot_manifest(dir_.path());
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(to_json(*back), to_json(sample()));
  EXPECT_EQ(back->vmm.name, "vmm-qemu");
  EXPECT_EQ(back->disks->drives.size(), 2u);
  EXPECT_EQ(back->network->tap, "tap0");
  EXPECT_EQ(back->boot_id, std::string(32, 'c'));
  // Only the manifest: no temp file left beside it.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_.path()), fs::directory_iterator()), 1);
}

TEST_F(SnapshotManifestTest, OptionalLeasesMayBeAbsent) {
  SnapshotManifest m = sample();
  m.disks.reset();
  m.network.reset();
  auto back = snapshot_manifest_from_json(to_json(m));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_FALSE(back->disks);
  EXPECT_FALSE(back->network);
}

TEST_F(SnapshotManifestTest, AnotherFormatVersionIsRefusedNamingBoth) {
  auto newer = to_json(sample());
  newer["format_version"] = SnapshotManifest::kFormatVersion + 1;
  ASSERT_TRUE(write_file_atomic(file(), newer.dump(), 0600).ok());
  auto refused = read_snapshot_manifest(dir_.path());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Errc::invalid_argument);
  const std::string why = refused.status().message();
  EXPECT_NE(why.find(file().string()), std::string::npos) << why;
  EXPECT_NE(why.find("format version " + std::to_string(SnapshotManifest::kFormatVersion + 1)),
            std::string::npos) << why;
  EXPECT_NE(why.find("newer fcvm"), std::string::npos) << why;

  auto older = to_json(sample());
  older["format_version"] = 0;
  auto old_refused = snapshot_manifest_from_json(older);
  ASSERT_FALSE(old_refused.ok());
  EXPECT_NE(old_refused.status().message().find("take the snapshot again"), std::string::npos);
}

TEST_F(SnapshotManifestTest, TruncatedFileIsRefusedWithTheFix) {
  const std::string whole = to_json(sample()).dump(2);
  ASSERT_TRUE(write_file_atomic(file(), whole.substr(0, whole.size() / 2), 0600).ok());
  auto refused = read_snapshot_manifest(dir_.path());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Errc::invalid_argument);
  EXPECT_NE(refused.status().message().find("truncated"), std::string::npos);
}

TEST_F(SnapshotManifestTest, MissingFileAndBadFieldsNameTheProblem) {
  auto missing = read_snapshot_manifest(dir_.path());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Errc::not_found);
  EXPECT_NE(missing.status().message().find("not an fcvm snapshot"), std::string::npos);

  auto no_boot = to_json(sample());
  no_boot.erase("boot_id");
  EXPECT_EQ(snapshot_manifest_from_json(no_boot).status().message(), "field 'boot_id' is missing");
  auto wrong_type = to_json(sample());
  wrong_type["memory_mib"] = "256M";
  EXPECT_NE(snapshot_manifest_from_json(wrong_type).status().message().find("'memory_mib'"),
            std::string::npos);
  auto absolute = to_json(sample());
  absolute["memory_file"] = "/elsewhere/mem";
  EXPECT_FALSE(snapshot_manifest_from_json(absolute).ok());
  EXPECT_FALSE(snapshot_manifest_from_json(nlohmann::json::array()).ok());
}

}  // namespace
}  // namespace fcvm
