#include "memory/file_memory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <gtest/gtest.h>

#include "fcvm/atomic_file.h"
#include "fcvm/unique_fd.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

class FileMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create("fcvm-file-memory-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    tmp_dir_ = std::move(*made);
    dir_ = tmp_dir_.path();
  }

  static struct stat stat_of(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st;
  }

  TempDir tmp_dir_;
  fs::path dir_;
  FileMemory memory_;
};

TEST_F(FileMemoryTest, ProbeIsAvailable) { EXPECT_TRUE(memory_.probe().available); }

TEST_F(FileMemoryTest, CloneMapsTheSnapshotImage) {
  SnapshotFiles snap{dir_ / "state", dir_ / "memory"};
  auto source = memory_.source_for_clone(snap, dir_ / "clone");
  ASSERT_TRUE(source.ok()) << source.status().message();
  EXPECT_EQ(source->kind, MemorySourceKind::file);
  EXPECT_EQ(source->path, snap.memory);
  EXPECT_FALSE(fs::exists(dir_ / "clone"));
}

TEST_F(FileMemoryTest, NeedsNoServer) {
  EXPECT_FALSE(memory_.capabilities().needs_server);
  EXPECT_EQ(memory_.capabilities().source_kind, MemorySourceKind::file);
  ASSERT_TRUE(write_file_atomic(dir_ / "memory", "pages").ok());
  MemoryServeOptions options;
  options.memory_image = dir_ / "memory";
  options.socket = dir_ / "mem.sock";
  auto server = memory_.serve(options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  EXPECT_EQ(*server, nullptr);
  EXPECT_FALSE(fs::exists(dir_ / "mem.sock"));
}

TEST_F(FileMemoryTest, ServeOfMissingImageIsNotFound) {
  MemoryServeOptions options;
  options.memory_image = dir_ / "gone";
  options.socket = dir_ / "mem.sock";
  auto server = memory_.serve(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), Errc::not_found);
  EXPECT_NE(server.status().message().find((dir_ / "gone").string()), std::string::npos);
}

TEST_F(FileMemoryTest, PlaceSharesOneInode) {
  ASSERT_TRUE(write_file_atomic(dir_ / "memory", "guest pages").ok());
  ASSERT_TRUE(memory_.place(dir_ / "memory", dir_ / "fork-memory").ok());
  const auto a = stat_of(dir_ / "memory");
  const auto b = stat_of(dir_ / "fork-memory");
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 2u);
}

TEST_F(FileMemoryTest, PlaceRefusesAnExistingDestination) {
  ASSERT_TRUE(write_file_atomic(dir_ / "memory", "new").ok());
  ASSERT_TRUE(write_file_atomic(dir_ / "fork-memory", "old").ok());
  Status st = memory_.place(dir_ / "memory", dir_ / "fork-memory");
  EXPECT_EQ(st.code(), Errc::already_exists);
  EXPECT_EQ(*read_file(dir_ / "fork-memory"), "old");
  EXPECT_EQ(stat_of(dir_ / "memory").st_nlink, 1u);
}

TEST_F(FileMemoryTest, WriteGuardGivesTheWrittenNameItsOwnInode) {
  ASSERT_TRUE(write_file_atomic(dir_ / "memory", "guest pages").ok());
  ASSERT_TRUE(memory_.place(dir_ / "memory", dir_ / "fork-memory").ok());
  const auto shared = stat_of(dir_ / "memory");

  ASSERT_TRUE(make_private_before_write(dir_ / "fork-memory").ok());
  const auto original = stat_of(dir_ / "memory");
  const auto fork = stat_of(dir_ / "fork-memory");
  EXPECT_EQ(original.st_ino, shared.st_ino);
  EXPECT_NE(fork.st_ino, shared.st_ino);
  EXPECT_EQ(original.st_nlink, 1u);
  EXPECT_EQ(fork.st_nlink, 1u);
  EXPECT_EQ(*read_file(dir_ / "fork-memory"), "guest pages");

  // Writing the private copy leaves the snapshot's image as it was.
  ASSERT_TRUE(write_file_atomic(dir_ / "fork-memory", "dirty").ok());
  EXPECT_EQ(*read_file(dir_ / "memory"), "guest pages");
  // Already private: a no-op.
  const auto before = stat_of(dir_ / "fork-memory");
  ASSERT_TRUE(make_private_before_write(dir_ / "fork-memory").ok());
  EXPECT_EQ(stat_of(dir_ / "fork-memory").st_ino, before.st_ino);
}

TEST_F(FileMemoryTest, SparseImageStaysSparse) {
  constexpr off_t kSize = 32 << 20;  // 32 MiB of guest memory, two pages of it written
  const fs::path image = dir_ / "memory";
  {
    UniqueFd fd(::open(image.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::ftruncate(fd.get(), kSize), 0);
    ASSERT_EQ(::pwrite(fd.get(), "first", 5, 4096), 5);
    ASSERT_EQ(::pwrite(fd.get(), "last", 4, kSize - 4096), 4);
  }
  const auto original = stat_of(image);
  if (original.st_blocks * 512 >= kSize) GTEST_SKIP() << "this filesystem has no holes";

  ASSERT_TRUE(memory_.place(image, dir_ / "fork-memory").ok());
  ASSERT_TRUE(make_private_before_write(dir_ / "fork-memory").ok());
  const auto copy = stat_of(dir_ / "fork-memory");
  EXPECT_NE(copy.st_ino, original.st_ino);
  EXPECT_EQ(copy.st_size, kSize);
  EXPECT_LT(copy.st_blocks * 512, kSize / 16) << "the private copy filled the holes";

  std::ifstream a(image, std::ios::binary), b(dir_ / "fork-memory", std::ios::binary);
  std::vector<char> ba(1 << 20), bb(1 << 20);
  while (a && b) {
    a.read(ba.data(), static_cast<std::streamsize>(ba.size()));
    b.read(bb.data(), static_cast<std::streamsize>(bb.size()));
    ASSERT_EQ(a.gcount(), b.gcount());
    ASSERT_TRUE(std::equal(ba.begin(), ba.begin() + a.gcount(), bb.begin()));
  }
}

TEST(FileMemoryDescriptor, IsABuiltinMemoryPluginNamedFile) {
  const PluginDescriptor& d = file_memory_descriptor();
  EXPECT_STREQ(d.name, "file");
  EXPECT_EQ(d.kind, PluginKind::memory);
  EXPECT_STREQ(d.fingerprint, host_fingerprint());
  auto made = d.create(PluginContext{null_logger(), nlohmann::json::object(), "/nonexistent"});
  ASSERT_TRUE(made.ok());
  EXPECT_EQ((*made)->kind(), PluginKind::memory);
}

}  // namespace
}  // namespace fcvm
