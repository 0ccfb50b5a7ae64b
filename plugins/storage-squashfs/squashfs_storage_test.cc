// storage-squashfs through the real plugin loader: the backend under test is the built
// plugin module, created with the config and data dir core would pass.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fcvm/child_process.h"
#include "fcvm/storage.h"
#include "plugin/plugin_registry.h"
#include "fcvm/file_clone.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

const std::string kDigest = "sha256:" + std::string(64, 'a');
constexpr const char* kPluginName = "storage-squashfs";

// A storage-squashfs backend from the build's plugin directory, its files under
// `data_dir`/storage-squashfs.
Result<std::shared_ptr<StorageBackend>> load_plugin(const fs::path& data_dir, LoggerPtr log,
                                                    nlohmann::json config = nlohmann::json::object()) {
  PluginRegistry registry({FCVM_PLUGIN_DIR}, nullptr);
  return registry.create_as<StorageBackend>(kPluginName, PluginKind::storage,
                                            PluginContext{std::move(log), std::move(config), data_dir});
}

// Keeps every line, so tests can count builds.
class RecordingLogger final : public Logger {
 public:
  void write(LogLevel, std::string_view message) const override {
    std::lock_guard<std::mutex> guard(mu_);
    lines_.emplace_back(message);
  }
  bool enabled(LogLevel) const override { return true; }
  std::shared_ptr<const Logger> child(std::string_view) const override { return null_logger(); }

  int count(std::string_view needle) const {
    std::lock_guard<std::mutex> guard(mu_);
    return static_cast<int>(std::count_if(lines_.begin(), lines_.end(), [&](const std::string& l) {
      return l.find(needle) != std::string::npos;
    }));
  }

 private:
  mutable std::mutex mu_;
  mutable std::vector<std::string> lines_;
};

std::vector<std::string> tree(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    out.push_back(fs::relative(it->path(), dir).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::uint64_t allocated_bytes(const fs::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_blocks) * 512 : 0;
}

class SquashfsStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create("fcvm-squashfs-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    tmp_dir_ = std::move(*made);
    tmp_ = tmp_dir_.path();
    // A small rootfs: a file, a directory, a symlink.
    rootfs_ = tmp_ / "rootfs";
    fs::create_directories(rootfs_ / "etc");
    std::ofstream(rootfs_ / "etc/hostname") << "squashfs-test\n";
    fs::create_symlink("etc/hostname", rootfs_ / "hostname");
    log_ = std::make_shared<RecordingLogger>();
    auto loaded = load_plugin(tmp_, log_);
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    storage_ = std::move(*loaded);
  }

  BaseImage base() {
    auto b = storage_->prepare_base({kDigest, rootfs_});
    EXPECT_TRUE(b.ok()) << b.status().message();
    return b.ok() ? *b : BaseImage{};
  }

  TempDir tmp_dir_;
  fs::path tmp_;
  fs::path rootfs_;
  std::shared_ptr<RecordingLogger> log_;
  std::shared_ptr<StorageBackend> storage_;
};

TEST_F(SquashfsStorageTest, ProbeFindsTheTools) {
  Probe p = storage_->probe();
  EXPECT_TRUE(p.available) << p.reason;
}

TEST_F(SquashfsStorageTest, BuildsTheBaseOnceThenReusesIt) {
  BaseImage first = base();
  EXPECT_EQ(first.digest, kDigest);
  EXPECT_EQ(first.path, tmp_ / "storage-squashfs/bases" / std::string(64, 'a') / "rootfs.sqfs");
  EXPECT_GT(first.bytes, 0u);
  EXPECT_EQ(first.bytes, fs::file_size(first.path));
  EXPECT_EQ(log_->count("built base"), 1);
  // Only the image remains: no lock or temp file.
  EXPECT_EQ(tree(first.path.parent_path()), std::vector<std::string>{"rootfs.sqfs"});

  // Its content is the rootfs (unsquashfs -l lists it).
  auto listing = run_command({"unsquashfs", "-l", first.path.string()});
  if (listing.ok()) {
    EXPECT_NE(listing->find("etc/hostname"), std::string::npos) << *listing;
  }

  // Cached: a second call builds nothing, even with the rootfs gone.
  fs::remove_all(rootfs_);
  BaseImage second = base();
  EXPECT_EQ(second.path, first.path);
  EXPECT_EQ(log_->count("built base"), 1);
}

TEST_F(SquashfsStorageTest, ConcurrentPreparesBuildOnce) {
  // Separate backend objects share nothing but the directory, like separate processes.
  std::vector<std::shared_ptr<StorageBackend>> backends;
  for (int i = 0; i < 6; ++i) {
    auto loaded = load_plugin(tmp_, log_);
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    backends.push_back(std::move(*loaded));
  }
  std::vector<Result<BaseImage>> results(backends.size(), Status(Errc::internal, "not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < backends.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = backends[i]->prepare_base({kDigest, rootfs_}); });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->path, results[0]->path);
  }
  EXPECT_EQ(log_->count("built base"), 1);
  EXPECT_EQ(tree(results[0]->path.parent_path()), std::vector<std::string>{"rootfs.sqfs"});
}

TEST_F(SquashfsStorageTest, MissingRootfsOrBadDigestLeavesNothing) {
  auto missing = storage_->prepare_base({kDigest, tmp_ / "nope"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Errc::not_found);
  EXPECT_NE(missing.status().message().find((tmp_ / "nope").string()), std::string::npos);

  auto bad = storage_->prepare_base({"sha256:xyz", rootfs_});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Errc::invalid_argument);
  EXPECT_TRUE(tree(tmp_ / kPluginName).empty());
}

TEST_F(SquashfsStorageTest, FailedBuildLeavesNothing) {
  // A mksquashfs that writes half an image and fails, found first in PATH.
  const fs::path bin = tmp_ / "bin";
  fs::create_directories(bin);
  std::ofstream(bin / "mksquashfs") << "#!/bin/sh\necho partial > \"$2\"\n"
                                       "echo 'mksquashfs: simulated failure' >&2\nexit 1\n";
  fs::permissions(bin / "mksquashfs", fs::perms::owner_all);
  const std::string saved_path = std::getenv("PATH");
  ::setenv("PATH", (bin.string() + ":" + saved_path).c_str(), 1);

  std::vector<Result<BaseImage>> results(3, Status(Errc::internal, "not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = storage_->prepare_base({kDigest, rootfs_}); });
  }
  for (auto& t : threads) t.join();
  ::setenv("PATH", saved_path.c_str(), 1);

  for (const auto& r : results) {
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("simulated failure"), std::string::npos)
        << r.status().message();
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
  }
  EXPECT_TRUE(tree(tmp_ / kPluginName / "bases").empty());
}

TEST_F(SquashfsStorageTest, CreateAndDestroyDisks) {
  BaseImage b = base();
  const fs::path vm = tmp_ / "vms/one";
  auto lease = storage_->create_disks(b, vm, DiskOptions{64});
  ASSERT_TRUE(lease.ok()) << lease.status().message();

  EXPECT_EQ(lease->plugin, kPluginName);
  ASSERT_EQ(lease->drives.size(), 2u);
  EXPECT_EQ(lease->drives[0].id, "root");
  EXPECT_EQ(lease->drives[0].path, b.path);
  EXPECT_TRUE(lease->drives[0].read_only);
  EXPECT_EQ(lease->drives[1].id, "scratch");
  EXPECT_EQ(lease->drives[1].path, vm / "scratch.ext4");
  EXPECT_FALSE(lease->drives[1].read_only);
  EXPECT_EQ(lease->root.mode, RootPlan::Mode::overlay);
  EXPECT_EQ(lease->root.lower_drive, "root");
  EXPECT_EQ(lease->root.lower_fstype, "squashfs");
  EXPECT_EQ(lease->root.upper_drive, "scratch");
  EXPECT_EQ(lease->root.upper_fstype, "ext4");

  const fs::path scratch = lease->drives[1].path;
  EXPECT_EQ(fs::file_size(scratch), 64u << 20);
  EXPECT_LT(allocated_bytes(scratch), 8u << 20) << "the scratch disk should be sparse";
  auto fsck = run_command({"e2fsck", "-n", "-f", scratch.string()});
  EXPECT_TRUE(fsck.ok()) << fsck.status().message();

  // The lease survives a JSON round trip (the host persists it).
  nlohmann::json j = *lease;
  auto back = j.get<DiskLease>();
  EXPECT_EQ(back.drives[1].path, scratch);

  // A second create into the same dir refuses rather than clobbers.
  auto again = storage_->create_disks(b, vm, DiskOptions{64});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Errc::already_exists);
  EXPECT_TRUE(fs::exists(scratch));

  ASSERT_TRUE(storage_->destroy(back).ok());
  EXPECT_TRUE(tree(vm).empty());
  EXPECT_TRUE(fs::exists(b.path)) << "destroy must never delete the base";
  EXPECT_TRUE(storage_->destroy(back).ok()) << "destroy is idempotent";
}

TEST_F(SquashfsStorageTest, CreateFailuresLeaveNothing) {
  BaseImage b = base();
  auto missing = storage_->create_disks({kDigest, tmp_ / "gone.sqfs", 1}, tmp_ / "vms/a", {64});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Errc::not_found);
  auto tiny = storage_->create_disks(b, tmp_ / "vms/b", DiskOptions{1});
  ASSERT_FALSE(tiny.ok());
  EXPECT_EQ(tiny.status().code(), Errc::invalid_argument);
  EXPECT_FALSE(fs::exists(tmp_ / "vms/a"));
  EXPECT_FALSE(fs::exists(tmp_ / "vms/b"));
}

TEST_F(SquashfsStorageTest, ZeroScratchSizeUsesThePluginDefault) {
  auto small = load_plugin(tmp_, log_, {{"scratch_mib", 16}});
  ASSERT_TRUE(small.ok()) << small.status().message();
  auto lease = (*small)->create_disks(base(), tmp_ / "vm", DiskOptions{0});
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  EXPECT_EQ(fs::file_size(lease->drives[1].path), 16u << 20);
}

TEST_F(SquashfsStorageTest, SnapshotAndClonesHaveIndependentScratchDisks) {
  BaseImage b = base();
  auto vm = storage_->create_disks(b, tmp_ / "vm", DiskOptions{32});
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  const fs::path vm_scratch = vm->drives[1].path;

  auto snap = storage_->snapshot_disks(*vm, tmp_ / "snap");
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  EXPECT_EQ(snap->drives[0].path, b.path) << "the base is shared, not copied";
  EXPECT_EQ(snap->drives[1].path, tmp_ / "snap/scratch.ext4");
  EXPECT_EQ(fs::file_size(snap->drives[1].path), fs::file_size(vm_scratch));
  EXPECT_LT(allocated_bytes(snap->drives[1].path), 8u << 20) << "the copy should stay sparse";
  EXPECT_EQ(snap->root.mode, RootPlan::Mode::overlay);

  auto c1 = storage_->clone_disks(*snap, tmp_ / "clone1");
  auto c2 = storage_->clone_disks(*snap, tmp_ / "clone2");
  ASSERT_TRUE(c1.ok()) << c1.status().message();
  ASSERT_TRUE(c2.ok()) << c2.status().message();
  EXPECT_EQ(c1->drives[1].path, tmp_ / "clone1/scratch.ext4");
  EXPECT_EQ(c1->drives[1].id, "scratch");
  EXPECT_EQ(c1->drives[0].path, b.path);

  // Writing one clone's disk changes neither the snapshot nor the other clone.
  auto read_block = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    in.seekg(1 << 20);
    std::string s(16, '\0');
    in.read(s.data(), 16);
    return s;
  };
  const std::string before = read_block(snap->drives[1].path);
  {
    std::fstream out(c1->drives[1].path, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(1 << 20);
    out.write("written by one!!", 16);
  }
  EXPECT_EQ(read_block(c1->drives[1].path), "written by one!!");
  EXPECT_EQ(read_block(c2->drives[1].path), before);
  EXPECT_EQ(read_block(snap->drives[1].path), before);
  EXPECT_EQ(read_block(vm_scratch), before);

  // A clone into a dir that already has the disk refuses and keeps it.
  auto dup = storage_->clone_disks(*snap, tmp_ / "clone1");
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().code(), Errc::already_exists);
  EXPECT_EQ(read_block(c1->drives[1].path), "written by one!!");

  for (const auto* lease : {&*c1, &*c2, &*snap, &*vm}) ASSERT_TRUE(storage_->destroy(*lease).ok());
  EXPECT_TRUE(tree(tmp_ / "clone1").empty());
  EXPECT_TRUE(tree(tmp_ / "snap").empty());
  EXPECT_TRUE(fs::exists(b.path));
}

TEST_F(SquashfsStorageTest, SnapshotOfAMissingDiskLeavesNothing) {
  auto vm = storage_->create_disks(base(), tmp_ / "vm", DiskOptions{16});
  ASSERT_TRUE(vm.ok());
  fs::remove(vm->drives[1].path);
  auto snap = storage_->snapshot_disks(*vm, tmp_ / "snap");
  ASSERT_FALSE(snap.ok());
  EXPECT_EQ(snap.status().code(), Errc::not_found);
  EXPECT_FALSE(fs::exists(tmp_ / "snap"));

  DiskLease foreign = *vm;
  foreign.plugin = "storage-btrfs";
  EXPECT_EQ(storage_->destroy(foreign).code(), Errc::invalid_argument);
}

// The plugin's config object reaches it through the loader and is checked there.
TEST(SquashfsOptionsTest, ConfigIsCheckedWhenThePluginIsCreated) {
  auto dir = TempDir::create("fcvm-squashfs-config-test-");
  ASSERT_TRUE(dir.ok());
  for (auto config : {nlohmann::json::object(), nlohmann::json::object({{"scratch_mib", 256}})}) {
    EXPECT_TRUE(load_plugin(dir->path(), null_logger(), config).ok()) << config;
  }
  auto unknown = load_plugin(dir->path(), null_logger(), {{"scratch_mb", 256}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Errc::invalid_argument);
  EXPECT_NE(unknown.status().message().find("\"scratch_mb\""), std::string::npos);
  for (auto bad : {nlohmann::json::object({{"scratch_mib", -1}}),
                   nlohmann::json::object({{"scratch_mib", "1G"}}),
                   nlohmann::json::object({{"scratch_mib", 2}}), nlohmann::json::array()}) {
    EXPECT_FALSE(load_plugin(dir->path(), null_logger(), bad).ok()) << bad;
  }
}

TEST(CloneFileTest, CopiesContentKeepsHolesAndNeverReplaces) {
  auto made = TempDir::create("fcvm-clone-test-");
  ASSERT_TRUE(made.ok()) << made.status().message();
  const fs::path dir = made->path();
  const fs::path from = dir / "from", to = dir / "to";
  {
    std::ofstream out(from, std::ios::binary);
    out << "head";
    out.seekp(40 << 20);
    out << "tail";
  }
  bool reflinked = false;
  Status copied = clone_file(from, to, CloneMode::create_new, &reflinked);
  ASSERT_TRUE(copied.ok()) << copied.message();
  std::cout << "clone_file on " << dir << ": " << (reflinked ? "reflink" : "sparse copy") << "\n";
  EXPECT_EQ(fs::file_size(to), fs::file_size(from));
  std::ifstream in(to, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.substr(0, 4), "head");
  EXPECT_EQ(bytes.substr(40 << 20), "tail");
  EXPECT_LT(allocated_bytes(to), 4u << 20) << "holes must stay holes";

  Status again = clone_file(from, to);
  EXPECT_EQ(again.code(), Errc::already_exists);
  EXPECT_EQ(clone_file(dir / "missing", dir / "x").code(), Errc::not_found);
  // No temp files left by any of it.
  EXPECT_EQ(tree(dir), (std::vector<std::string>{"from", "to"}));
}

}  // namespace
}  // namespace fcvm
