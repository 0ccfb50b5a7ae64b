// storage-btrfs against real btrfs filesystems on loop devices.
#include "btrfs_storage.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "fcvm/child_process.h"
#include "fcvm/loop_device.h"
#include "fcvm/mount.h"
#include "fcvm/unique_fd.h"
#include "fcvm/temp_dir.h"
#include "loop_filesystem.h"

namespace fcvm::btrfs {
namespace {

namespace fs = std::filesystem;
using fcvm::testing::LoopFilesystem;

const std::string kDigest = "sha256:" + std::string(64, 'a');

// Whether every data extent of `path` is shared with another file (FIEMAP_EXTENT_SHARED).
// False for a file without extents.
bool all_extents_shared(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  constexpr unsigned kMax = 512;
  std::vector<char> buf(sizeof(fiemap) + kMax * sizeof(fiemap_extent));
  auto* map = reinterpret_cast<fiemap*>(buf.data());
  map->fm_length = FIEMAP_MAX_OFFSET;
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = kMax;
  if (::ioctl(fd.get(), FS_IOC_FIEMAP, map) != 0 || map->fm_mapped_extents == 0) return false;
  for (unsigned i = 0; i < map->fm_mapped_extents; ++i) {
    if ((map->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED) == 0) return false;
  }
  return true;
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A file from inside an ext4 image, read without mounting it.
std::string file_in_image(const fs::path& image, const std::string& file) {
  auto out = run_command({"/usr/sbin/debugfs", "-R", "cat " + file, image.string()});
  return out.ok() ? *out : "<debugfs failed: " + out.status().message() + ">";
}

TEST(BtrfsOptions, ParsesKnownKeysAndRefusesOthers) {
  auto d = Options::from_json(nlohmann::json::object());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->reflink, ReflinkPolicy::required);
  auto a = Options::from_json({{"reflink", "auto"}, {"headroom_mib", 64}, {"volume_mib", 512}});
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->reflink, ReflinkPolicy::automatic);
  EXPECT_EQ(a->headroom_mib, 64u);
  EXPECT_EQ(a->volume_mib, 512u);
  EXPECT_NE(Options::from_json({{"reflink", "sometimes"}}).status().message().find("\"auto\""),
            std::string::npos);
  EXPECT_NE(Options::from_json({{"headroom", 1}}).status().message().find("known keys"),
            std::string::npos);
  EXPECT_FALSE(Options::from_json({{"headroom_mib", -1}}).ok());
}

// A data dir on a real btrfs, and a small image rootfs beside it.
class BtrfsStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = LoopFilesystem::missing_prerequisite("btrfs"); !why.empty()) GTEST_SKIP() << why;
    auto made = LoopFilesystem::create("btrfs", 512);
    ASSERT_TRUE(made.ok()) << made.status().message();
    btrfs_.emplace(std::move(*made));
    data_dir_ = btrfs_->mount_point() / "data";
    rootfs_ = btrfs_->mount_point() / "rootfs";
    fs::create_directories(rootfs_ / "etc");
    std::ofstream(rootfs_ / "hello.txt") << "hello from the base\n";
    std::ofstream(rootfs_ / "etc" / "big") << std::string(3 << 20, 'x');
    fs::create_symlink("hello.txt", rootfs_ / "link");
  }

  BtrfsStorage storage(Options options = small_options()) {
    return BtrfsStorage(data_dir_, options, nullptr);
  }
  static Options small_options() {
    Options o;
    o.headroom_mib = 32;
    return o;
  }

  std::optional<LoopFilesystem> btrfs_;
  fs::path data_dir_, rootfs_;
};

TEST_F(BtrfsStorageTest, ProbeSaysTheDataDirIsBtrfs) {
  Probe p = storage().probe();
  EXPECT_TRUE(p.available) << p.reason;
  EXPECT_NE(p.reason.find("is on btrfs"), std::string::npos) << p.reason;
}

TEST_F(BtrfsStorageTest, BaseIsAnExt4FilledFromTheRootfsAndBuiltOnce) {
  auto s = storage();
  auto base = s.prepare_base({kDigest, rootfs_});
  ASSERT_TRUE(base.ok()) << base.status().message();
  EXPECT_EQ(base->path, data_dir_ / "storage-btrfs" / "bases" / (std::string(64, 'a') + ".ext4"));
  EXPECT_EQ(file_in_image(base->path, "/hello.txt"), "hello from the base\n");
  EXPECT_EQ(file_in_image(base->path, "/etc/big").size(), 3u << 20);
  // Sized from the rootfs plus the headroom.
  EXPECT_GE(base->bytes, (32u + 3u) << 20);
  EXPECT_LE(base->bytes, (32u + 3u + 80u) << 20);
  struct stat first {}, second{};
  ASSERT_EQ(::stat(base->path.c_str(), &first), 0);
  auto again = s.prepare_base({kDigest, rootfs_});
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(::stat(again->path.c_str(), &second), 0);
  EXPECT_EQ(first.st_ino, second.st_ino);
  EXPECT_EQ(first.st_mtim.tv_nsec, second.st_mtim.tv_nsec);
}

TEST_F(BtrfsStorageTest, ABuildSweepsTempFilesOfKilledBuilds) {
  const fs::path bases = data_dir_ / "storage-btrfs" / "bases";
  fs::create_directories(bases);
  std::ofstream(bases / ("." + std::string(64, 'c') + ".ext4.tmp")) << "half a base";
  auto base = storage().prepare_base({kDigest, rootfs_});
  ASSERT_TRUE(base.ok()) << base.status().message();
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(bases)) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{std::string(64, 'a') + ".ext4"});
}

TEST_F(BtrfsStorageTest, ConcurrentBuildsOfOneDigestBuildOnce) {
  std::vector<Result<BaseImage>> results(4, Result<BaseImage>(error(Errc::internal, "not run")));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] {
      auto s = storage();
      results[i] = s.prepare_base({kDigest, rootfs_});
    });
  }
  for (auto& t : threads) t.join();
  std::set<ino_t> inodes;
  for (auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().message();
    struct stat st {};
    ASSERT_EQ(::stat(r->path.c_str(), &st), 0);
    inodes.insert(st.st_ino);
  }
  EXPECT_EQ(inodes.size(), 1u);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(data_dir_ / "storage-btrfs" / "bases"))
    names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{std::string(64, 'a') + ".ext4"});
}

TEST_F(BtrfsStorageTest, VmDiskIsAReflinkAndItsWritesLeaveTheBaseAlone) {
  auto s = storage();
  auto base = s.prepare_base({kDigest, rootfs_});
  ASSERT_TRUE(base.ok()) << base.status().message();
  const std::string base_bytes = read_all(base->path);
  const fs::path vm_dir = data_dir_ / "vms" / "vm1";
  auto lease = s.create_disks(*base, vm_dir, {});
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  ASSERT_EQ(lease->drives.size(), 1u);
  EXPECT_EQ(lease->drives[0].id, "root");
  EXPECT_EQ(lease->drives[0].path, vm_dir / "root.ext4");
  EXPECT_FALSE(lease->drives[0].read_only);
  EXPECT_EQ(lease->root.mode, RootPlan::Mode::direct);
  EXPECT_EQ(lease->root.lower_drive, "root");
  EXPECT_EQ(lease->root.lower_fstype, "ext4");
  EXPECT_TRUE(all_extents_shared(vm_dir / "root.ext4"));
  EXPECT_TRUE(all_extents_shared(base->path));

  {
    UniqueFd fd(::open((vm_dir / "root.ext4").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    const std::string junk(1 << 20, '\xaa');
    ASSERT_EQ(::pwrite(fd.get(), junk.data(), junk.size(), 4096), static_cast<ssize_t>(junk.size()));
    ASSERT_EQ(::fsync(fd.get()), 0);
  }
  EXPECT_EQ(read_all(base->path), base_bytes);
  EXPECT_NE(read_all(vm_dir / "root.ext4"), base_bytes);
}

TEST_F(BtrfsStorageTest, SnapshotAndCloneAreReflinksWithTheSameDriveIdsAndNames) {
  auto s = storage();
  auto base = s.prepare_base({kDigest, rootfs_});
  ASSERT_TRUE(base.ok()) << base.status().message();
  auto vm = s.create_disks(*base, data_dir_ / "vms" / "src", {});
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  {
    std::ofstream out(vm->drives[0].path, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(8192);
    out << "written by the source VM";
  }
  auto snap = s.snapshot_disks(*vm, data_dir_ / "snapshots" / "s1");
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  auto clone = s.clone_disks(*snap, data_dir_ / "vms" / "clone1");
  ASSERT_TRUE(clone.ok()) << clone.status().message();
  for (const auto* lease : {&*snap, &*clone}) {
    ASSERT_EQ(lease->drives.size(), 1u);
    EXPECT_EQ(lease->drives[0].id, vm->drives[0].id);
    EXPECT_EQ(lease->drives[0].path.filename(), vm->drives[0].path.filename());
    EXPECT_TRUE(all_extents_shared(lease->drives[0].path)) << lease->drives[0].path;
    EXPECT_EQ(read_all(lease->drives[0].path), read_all(vm->drives[0].path));
  }
  EXPECT_EQ(clone->drives[0].path, data_dir_ / "vms" / "clone1" / "root.ext4");
}

TEST_F(BtrfsStorageTest, DestroyRemovesExactlyWhatTheVmOwned) {
  auto s = storage();
  auto base = s.prepare_base({kDigest, rootfs_});
  ASSERT_TRUE(base.ok()) << base.status().message();
  auto vm = s.create_disks(*base, data_dir_ / "vms" / "a", {});
  auto other = s.create_disks(*base, data_dir_ / "vms" / "b", {});
  ASSERT_TRUE(vm.ok() && other.ok());
  auto snap = s.snapshot_disks(*vm, data_dir_ / "snapshots" / "a");
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(s.destroy(*vm).ok());
  EXPECT_FALSE(fs::exists(vm->drives[0].path));
  EXPECT_TRUE(fs::exists(other->drives[0].path));
  EXPECT_TRUE(fs::exists(snap->drives[0].path));
  EXPECT_TRUE(fs::exists(base->path));
  EXPECT_TRUE(s.destroy(*vm).ok());  // idempotent

  DiskLease forged = *vm;
  forged.drives[0].path = base->path;
  EXPECT_FALSE(s.destroy(forged).ok());
  EXPECT_TRUE(fs::exists(base->path));
}

// A VM dir off the btrfs (the usual data dir on ext4 with the volume mounted inside it):
// the disk lives on the btrfs and the VM dir gets a symlink with the same name.
TEST_F(BtrfsStorageTest, VmDirOnAnotherFilesystemGetsASymlinkToItsDisk) {
  auto s = storage();
  auto base = s.prepare_base({kDigest, rootfs_});
  ASSERT_TRUE(base.ok()) << base.status().message();
  auto outside = TempDir::create(fs::temp_directory_path(), "fcvm-btrfs-vmdir-");
  ASSERT_TRUE(outside.ok());
  const fs::path vm_dir = outside->path() / "vm";
  auto lease = s.create_disks(*base, vm_dir, {});
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  const fs::path name = vm_dir / "root.ext4";
  ASSERT_TRUE(fs::is_symlink(name));
  const fs::path disk = fs::read_symlink(name);
  EXPECT_EQ(disk.parent_path().parent_path(), data_dir_ / "storage-btrfs" / "disks");
  EXPECT_TRUE(all_extents_shared(disk));
  ASSERT_TRUE(s.destroy(*lease).ok());
  EXPECT_FALSE(fs::exists(fs::symlink_status(name)));
  EXPECT_FALSE(fs::exists(disk.parent_path()));
}

// A data dir on ext4: "required" refuses with the fix, "auto" copies with a warning.
TEST_F(BtrfsStorageTest, WithoutBtrfsRequiredRefusesAndAutoCopies) {
  auto ext4 = LoopFilesystem::create("ext4", 128);
  ASSERT_TRUE(ext4.ok()) << ext4.status().message();
  BtrfsStorage required(ext4->mount_point() / "data", small_options(), nullptr);
  Probe p = required.probe();
  EXPECT_FALSE(p.available);
  EXPECT_NE(p.reason.find("is ext4, not btrfs"), std::string::npos) << p.reason;
  EXPECT_NE(p.reason.find("fcvm setup storage"), std::string::npos) << p.reason;
  auto refused = required.prepare_base({kDigest, rootfs_});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Errc::unavailable);
  EXPECT_NE(refused.status().message().find("fcvm setup storage"), std::string::npos);
  EXPECT_FALSE(fs::exists(ext4->mount_point() / "data" / "storage-btrfs" / "bases"));

  Options automatic = small_options();
  automatic.reflink = ReflinkPolicy::automatic;
  BtrfsStorage copies(ext4->mount_point() / "data", automatic, nullptr);
  EXPECT_TRUE(copies.probe().available);
  auto base = copies.prepare_base({kDigest, rootfs_});
  ASSERT_TRUE(base.ok()) << base.status().message();
  auto lease = copies.create_disks(*base, ext4->mount_point() / "data" / "vms" / "v", {});
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  EXPECT_EQ(read_all(lease->drives[0].path), read_all(base->path));
  EXPECT_TRUE(copies.destroy(*lease).ok());
}

// mkfs.ext4 runs out of space half-way: no base, no temp file. (On ext4 with reflink
// "auto": a nearly full btrfs can take minutes to report ENOSPC.)
TEST_F(BtrfsStorageTest, FailedBuildLeavesNothing) {
  auto small = LoopFilesystem::create("ext4", 96);
  ASSERT_TRUE(small.ok()) << small.status().message();
  auto big_rootfs = TempDir::create(fs::temp_directory_path(), "fcvm-btrfs-rootfs-");
  ASSERT_TRUE(big_rootfs.ok());
  {
    std::ifstream random("/dev/urandom", std::ios::binary);
    std::ofstream out(big_rootfs->path() / "blob", std::ios::binary);
    std::vector<char> chunk(1 << 20);
    for (int i = 0; i < 120; ++i) {
      random.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    }
  }
  Options automatic = small_options();
  automatic.reflink = ReflinkPolicy::automatic;
  BtrfsStorage s(small->mount_point() / "data", automatic, nullptr);
  auto base = s.prepare_base({kDigest, big_rootfs->path()});
  ASSERT_FALSE(base.ok());
  EXPECT_NE(base.status().message().find("building the base"), std::string::npos)
      << base.status().message();
  EXPECT_TRUE(fs::is_empty(small->mount_point() / "data" / "storage-btrfs" / "bases"));
}

// `fcvm setup storage` on a data dir that is not btrfs.
class BtrfsSetupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = LoopFilesystem::missing_prerequisite("btrfs"); !why.empty()) GTEST_SKIP() << why;
    auto dir = TempDir::create(fs::temp_directory_path(), "fcvm-btrfs-setup-");
    ASSERT_TRUE(dir.ok());
    dir_ = std::move(*dir);
    options_.volume_mib = 256;
    options_.headroom_mib = 16;
  }
  void TearDown() override {
    if (dir_.path().empty()) return;
    const fs::path mount_point = dir_.path() / "data" / "btrfs";
    auto mounted = is_mount_point(mount_point);
    if (mounted.ok() && *mounted) {
      EXPECT_TRUE(Mount::adopt(mount_point).unmount().ok());
    }
    EXPECT_TRUE(loop_devices_backed_by(dir_.path() / "data" / "storage-btrfs" / "volume.btrfs").empty());
  }
  TempDir dir_;
  Options options_;
};

TEST_F(BtrfsSetupTest, CreatesMountsRecordsAndRemountsAfterAReboot) {
  const fs::path data = dir_.path() / "data";
  BtrfsStorage s(data, options_, nullptr);
  EXPECT_FALSE(s.probe().available);
  auto done = s.setup_host();
  ASSERT_TRUE(done.ok()) << done.status().message();
  EXPECT_NE(done->find("created"), std::string::npos) << *done;
  EXPECT_EQ(s.volume().state(), BtrfsVolume::State::mounted);
  EXPECT_TRUE(is_btrfs(data / "btrfs"));
  EXPECT_EQ(loop_devices_backed_by(data / "storage-btrfs" / "volume.btrfs").size(), 1u);
  const auto record = nlohmann::json::parse(read_all(data / "storage-btrfs" / "volume.json"));
  EXPECT_EQ(record["version"], 1);
  EXPECT_EQ(record["mount_point"], (data / "btrfs").string());
  struct stat st {};
  ASSERT_EQ(::stat((data / "storage-btrfs" / "volume.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(s.probe().available);

  auto again = s.setup_host();  // idempotent
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_NE(again->find("mounted at"), std::string::npos) << *again;
  EXPECT_EQ(loop_devices_backed_by(data / "storage-btrfs" / "volume.btrfs").size(), 1u);

  // Disks go to the volume; a base survives the "reboot" (unmount) and the volume comes back.
  std::ofstream(dir_.path() / "f") << "x";
  fs::create_directories(dir_.path() / "rootfs");
  std::ofstream(dir_.path() / "rootfs" / "a") << "a";
  auto base = s.prepare_base({kDigest, dir_.path() / "rootfs"});
  ASSERT_TRUE(base.ok()) << base.status().message();
  EXPECT_EQ(base->path.parent_path(), data / "btrfs" / "bases");
  auto lease = s.create_disks(*base, data / "vms" / "v", {});
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  EXPECT_TRUE(all_extents_shared(fs::read_symlink(lease->drives[0].path)));

  ASSERT_TRUE(Mount::adopt(data / "btrfs").unmount().ok());
  EXPECT_TRUE(loop_devices_backed_by(data / "storage-btrfs" / "volume.btrfs").empty());
  EXPECT_EQ(s.volume().state(), BtrfsVolume::State::unmounted);
  auto after = s.prepare_base({kDigest, dir_.path() / "rootfs"});
  ASSERT_TRUE(after.ok()) << after.status().message();
  EXPECT_EQ(s.volume().state(), BtrfsVolume::State::mounted);
  EXPECT_TRUE(s.destroy(*lease).ok());
  EXPECT_TRUE(fs::is_empty(data / "btrfs" / "disks"));
}

TEST_F(BtrfsSetupTest, RefusesWithoutRootAndLeavesNothing) {
  const fs::path data = dir_.path() / "data";
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(pipe_fds[0]);
    if (::setresuid(65534, 65534, 65534) != 0) ::_exit(2);
    BtrfsStorage s(data, options_, nullptr);
    auto done = s.setup_host();
    const std::string msg = done.ok() ? "ok" : done.status().message();
    (void)!::write(pipe_fds[1], msg.data(), msg.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string msg;
  char buf[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;) msg.append(buf, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_NE(msg.find("must run as root"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(data / "storage-btrfs" / "volume.btrfs"));
  EXPECT_FALSE(fs::exists(data / "btrfs"));
}

}  // namespace
}  // namespace fcvm::btrfs
