#include "uffd_memory.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "fcvm/atomic_file.h"

namespace fcvm::uffd {
namespace {

namespace fs = std::filesystem;

class UffdMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "fcvm-uffd-memory.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  UffdMemory memory_{null_logger()};
};

TEST_F(UffdMemoryTest, DeclaresAServerAndUffdSources) {
  const auto caps = memory_.capabilities();
  EXPECT_TRUE(caps.needs_server);
  EXPECT_EQ(caps.source_kind, MemorySourceKind::uffd);
  EXPECT_TRUE(caps.adopts_clients);
  EXPECT_TRUE(caps.prefetch);
  EXPECT_EQ(memory_.kind(), PluginKind::memory);
}

TEST_F(UffdMemoryTest, ClonesConnectToTheSnapshotsOneSocket) {
  SnapshotFiles snap{dir_ / "snap/state", dir_ / "snap/memory"};
  auto a = memory_.source_for_clone(snap, dir_ / "clone-a");
  auto b = memory_.source_for_clone(snap, dir_ / "clone-b");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->kind, MemorySourceKind::uffd);
  EXPECT_EQ(a->path, dir_ / "snap/memory-uffd.sock");
  EXPECT_EQ(a->path, b->path);
  EXPECT_FALSE(fs::exists(dir_ / "clone-a"));
}

TEST_F(UffdMemoryTest, ServeBindsTheSocketPrivatelyAndCleansUp) {
  ASSERT_TRUE(write_file_atomic(dir_ / "memory", std::string(1 << 16, 'x')).ok());
  MemoryServeOptions o;
  o.memory_image = dir_ / "memory";
  o.socket = dir_ / "mem.sock";
  o.state_dir = dir_ / "state";
  {
    auto server = memory_.serve(o);
    ASSERT_TRUE(server.ok()) << server.status().message();
    ASSERT_NE(*server, nullptr);
    struct stat st {};
    ASSERT_EQ(::stat(o.socket.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat(o.state_dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_TRUE((*server)->dispatch().ok());
    EXPECT_TRUE((*server)->clients().empty());
  }
  EXPECT_FALSE(fs::exists(o.socket)) << "the socket goes with the server";
}

TEST_F(UffdMemoryTest, ServeRefusesBadInputLeavingNothing) {
  MemoryServeOptions o;
  o.memory_image = dir_ / "missing";
  o.socket = dir_ / "mem.sock";
  o.state_dir = dir_ / "state";
  auto missing = memory_.serve(o);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Errc::not_found);
  EXPECT_NE(missing.status().message().find("missing"), std::string::npos);

  ASSERT_TRUE(write_file_atomic(dir_ / "memory", "x").ok());
  o.memory_image = dir_ / "memory";
  o.fault_chunk_bytes = 12288;
  auto chunk = memory_.serve(o);
  ASSERT_FALSE(chunk.ok());
  EXPECT_EQ(chunk.status().code(), Errc::invalid_argument);
  EXPECT_FALSE(fs::exists(o.socket));
}

TEST_F(UffdMemoryTest, PlaceHardlinksAndRefusesAnExistingName) {
  ASSERT_TRUE(write_file_atomic(dir_ / "memory", "pages").ok());
  ASSERT_TRUE(memory_.place(dir_ / "memory", dir_ / "fork").ok());
  EXPECT_EQ(fs::hard_link_count(dir_ / "memory"), 2u);
  EXPECT_EQ(memory_.place(dir_ / "memory", dir_ / "fork").code(), Errc::already_exists);
}

}  // namespace
}  // namespace fcvm::uffd
