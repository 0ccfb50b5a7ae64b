// Mem-file ownership on real filesystems: forks hardlink one image, the nlink guard
// unshares before a write, and every failure leaves the shared image as it was.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <list>
#include <optional>
#include <random>

#include "fcvm/memory.h"
#include "fcvm/memory_image.h"
#include "fcvm/unique_fd.h"
#include "loop_filesystem.h"
#include "memory/file_memory.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;
using testing::LoopFilesystem;

struct stat stat_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st;
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A memory image of `size` bytes with `pages` random 4 KiB pages written, the rest holes.
void write_image(const fs::path& path, off_t size, int pages) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  ASSERT_TRUE(fd);
  ASSERT_EQ(::ftruncate(fd.get(), size), 0);
  std::mt19937 rng(42);
  std::string page(4096, '\0');
  for (int i = 0; i < pages; ++i) {
    for (auto& c : page) c = static_cast<char>(rng());
    const off_t at = static_cast<off_t>(rng() % static_cast<unsigned>(size / 4096)) * 4096;
    ASSERT_EQ(::pwrite(fd.get(), page.data(), page.size(), at), 4096);
  }
  ASSERT_EQ(::fsync(fd.get()), 0);
}

bool has_shared_extent(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::vector<char> buf(sizeof(fiemap) + 64 * sizeof(fiemap_extent));
  auto* map = reinterpret_cast<fiemap*>(buf.data());
  map->fm_length = FIEMAP_MAX_OFFSET;
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = 64;
  if (!fd || ::ioctl(fd.get(), FS_IOC_FIEMAP, map) != 0) return false;
  for (unsigned i = 0; i < map->fm_mapped_extents; ++i) {
    if (map->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED) return true;
  }
  return false;
}

// Temp files the guard or a copy might leave behind.
size_t entries_in(const fs::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

class MemoryGuardTest : public ::testing::Test {
 protected:
  // A fresh loop filesystem of `fstype`, or a skip.
  LoopFilesystem* make(const std::string& fstype, std::uint64_t mib) {
    if (auto why = LoopFilesystem::missing_prerequisite(fstype); !why.empty()) {
      skip_ = why;
      return nullptr;
    }
    auto made = LoopFilesystem::create(fstype, mib);
    EXPECT_TRUE(made.ok()) << made.status().message();
    if (!made.ok()) return nullptr;
    return &filesystems_.emplace_back(std::move(*made));
  }
  std::string skip_;
  std::list<LoopFilesystem> filesystems_;  // stable addresses: tests hold pointers
};

#define REQUIRE_FS(var, fstype, mib)               \
  LoopFilesystem* var = make(fstype, mib);         \
  if (!skip_.empty()) GTEST_SKIP() << skip_;       \
  ASSERT_NE(var, nullptr)

TEST_F(MemoryGuardTest, ForksShareTheSourceInodeAndOutliveIt) {
  REQUIRE_FS(btrfs, "btrfs", 256);
  const fs::path snap = btrfs->mount_point() / "snap.mem";
  write_image(snap, 16 << 20, 64);
  const std::string bytes = read_all(snap);
  fs::create_directories(btrfs->mount_point() / "f1");
  fs::create_directories(btrfs->mount_point() / "f2");
  auto a = place_memory_image(snap, btrfs->mount_point() / "f1" / "mem");
  auto b = place_memory_image(snap, btrfs->mount_point() / "f2" / "mem");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, MemoryPlacement::hardlink);
  EXPECT_EQ(stat_of(btrfs->mount_point() / "f1" / "mem").st_ino, stat_of(snap).st_ino);
  EXPECT_EQ(stat_of(btrfs->mount_point() / "f2" / "mem").st_ino, stat_of(snap).st_ino);
  EXPECT_EQ(stat_of(snap).st_nlink, 3u);
  // Deleting the snapshot removes a name; the forks keep the bytes.
  ASSERT_EQ(::unlink(snap.c_str()), 0);
  EXPECT_EQ(read_all(btrfs->mount_point() / "f1" / "mem"), bytes);
  EXPECT_EQ(place_memory_image(btrfs->mount_point() / "f1" / "mem", btrfs->mount_point() / "f2" / "mem")
                .status()
                .code(),
            Errc::already_exists);
}

TEST_F(MemoryGuardTest, GuardUnsharesWhileOtherNamesKeepBytesAndInode) {
  REQUIRE_FS(btrfs, "btrfs", 256);
  const fs::path snap = btrfs->mount_point() / "snap.mem";
  const fs::path fork = btrfs->mount_point() / "fork.mem";
  const fs::path other = btrfs->mount_point() / "other.mem";
  write_image(snap, 16 << 20, 64);
  const std::string bytes = read_all(snap);
  ASSERT_TRUE(place_memory_image(snap, fork).ok());
  ASSERT_TRUE(place_memory_image(snap, other).ok());
  const ino_t shared = stat_of(snap).st_ino;

  ASSERT_TRUE(make_private_before_write(fork).ok());
  EXPECT_NE(stat_of(fork).st_ino, shared);
  EXPECT_EQ(stat_of(fork).st_nlink, 1u);
  EXPECT_EQ(stat_of(snap).st_ino, shared);
  EXPECT_EQ(stat_of(other).st_ino, shared);
  EXPECT_EQ(stat_of(snap).st_nlink, 2u);
  EXPECT_TRUE(has_shared_extent(fork)) << "on btrfs the private copy is a reflink";

  {
    std::fstream out(fork, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(0);
    out << "the fork writes";
  }
  EXPECT_EQ(read_all(snap), bytes);
  EXPECT_EQ(read_all(other), bytes);
  EXPECT_EQ(entries_in(btrfs->mount_point()), 3u) << "a temp file was left";
}

TEST_F(MemoryGuardTest, PrivateFileIsLeftAlone) {
  REQUIRE_FS(ext4, "ext4", 64);
  const fs::path mem = ext4->mount_point() / "mem";
  write_image(mem, 4 << 20, 8);
  const auto before = stat_of(mem);
  ASSERT_TRUE(make_private_before_write(mem).ok());
  const auto after = stat_of(mem);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  EXPECT_EQ(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
}

// ext4 cannot reflink: the guard's copy is the io_uring sparse copy.
TEST_F(MemoryGuardTest, SparseCopyKeepsHolesAndBytes) {
  REQUIRE_FS(ext4, "ext4", 256);
  constexpr off_t kSize = 128 << 20;
  const fs::path snap = ext4->mount_point() / "snap.mem";
  const fs::path fork = ext4->mount_point() / "fork.mem";
  write_image(snap, kSize, 300);  // about 1 MiB of 128 MiB allocated
  ASSERT_TRUE(place_memory_image(snap, fork).ok());
  ASSERT_TRUE(make_private_before_write(fork).ok());
  const auto copy = stat_of(fork);
  const auto original = stat_of(snap);
  EXPECT_NE(copy.st_ino, original.st_ino);
  EXPECT_EQ(copy.st_size, kSize);
  EXPECT_LE(copy.st_blocks, original.st_blocks + 64) << "the copy filled holes";
  EXPECT_LT(copy.st_blocks * 512, kSize / 32);
  EXPECT_EQ(read_all(fork), read_all(snap));
}

TEST_F(MemoryGuardTest, NoSpaceLeavesTheOriginalIntact) {
  REQUIRE_FS(ext4, "ext4", 48);
  const fs::path snap = ext4->mount_point() / "snap.mem";
  const fs::path fork = ext4->mount_point() / "fork.mem";
  {
    // Dense: 28 MiB of data on a 48 MiB filesystem leaves no room for a second copy.
    UniqueFd fd(::open(snap.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    const std::string chunk(1 << 20, '\x5a');
    for (int i = 0; i < 28; ++i) ASSERT_EQ(::write(fd.get(), chunk.data(), chunk.size()), 1 << 20);
  }
  const std::string bytes = read_all(snap);
  ASSERT_TRUE(place_memory_image(snap, fork).ok());
  const ino_t shared = stat_of(snap).st_ino;

  Status st = make_private_before_write(fork);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("no space left"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("unchanged"), std::string::npos) << st.message();
  EXPECT_EQ(stat_of(fork).st_ino, shared);
  EXPECT_EQ(stat_of(snap).st_nlink, 2u);
  EXPECT_EQ(read_all(fork), bytes);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(ext4->mount_point())) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"fork.mem", "lost+found", "snap.mem"}));
}

// Across filesystems link(2) fails with EXDEV: the fork gets a sparse copy, with a warning.
TEST_F(MemoryGuardTest, AcrossFilesystemsPlacementFallsBackToACopy) {
  REQUIRE_FS(btrfs, "btrfs", 256);
  LoopFilesystem* ext4 = make("ext4", 128);
  ASSERT_NE(ext4, nullptr);
  const fs::path snap = btrfs->mount_point() / "snap.mem";
  write_image(snap, 64 << 20, 100);
  const fs::path fork = ext4->mount_point() / "fork.mem";

  struct Captured : Logger {
    mutable std::string lines;
    void write(LogLevel, std::string_view m) const override { lines += std::string(m) + "\n"; }
    bool enabled(LogLevel) const override { return true; }
    std::shared_ptr<const Logger> child(std::string_view) const override {
      return std::make_shared<Captured>();
    }
  };
  auto log = std::make_shared<Captured>();
  FileMemory memory(log);
  ASSERT_TRUE(memory.place(snap, fork).ok());
  EXPECT_NE(stat_of(fork).st_ino, stat_of(snap).st_ino);
  EXPECT_EQ(stat_of(snap).st_nlink, 1u);
  EXPECT_EQ(read_all(fork), read_all(snap));
  EXPECT_LT(stat_of(fork).st_blocks * 512, 8 << 20) << "the copy filled holes";
  EXPECT_NE(log->lines.find("is a copy of"), std::string::npos) << log->lines;
}

}  // namespace
}  // namespace fcvm
