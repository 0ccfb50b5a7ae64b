// vm_accounting against this process and real files: PSS fields from smaps_rollup, and disk
// bytes split into shared (hard links, shared extents) and owned.
#include "engine/vm_accounting.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include "fcvm/atomic_file.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

TEST(VmAccounting, PssOfALiveProcessAndNoneOfAGoneOne) {
  auto pss = process_pss(::getpid());
  ASSERT_TRUE(pss.has_value());
  for (const char* field : {"rss", "pss", "pss_anon", "pss_file", "pss_shmem"}) {
    ASSERT_TRUE(pss->contains(field)) << pss->dump();
  }
  EXPECT_GT((*pss)["pss"].get<std::uint64_t>(), 0u);
  EXPECT_LE((*pss)["pss"].get<std::uint64_t>(), (*pss)["rss"].get<std::uint64_t>());
  EXPECT_FALSE(process_pss(0x3fffff).has_value());
}

TEST(VmAccounting, HardLinkedFilesCountAsSharedTheRestAsOwned) {
  auto dir = TempDir::create("fcvm-accounting");
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  const auto own = dir->path() / "own";
  const auto linked = dir->path() / "linked";
  ASSERT_TRUE(write_file_atomic(own, std::string(64 * 1024, 'a'), 0600).ok());
  ASSERT_TRUE(write_file_atomic(linked, std::string(128 * 1024, 'b'), 0600).ok());
  ASSERT_EQ(::link(linked.c_str(), (dir->path() / "fork-name").c_str()), 0);
  std::filesystem::create_directory(dir->path() / "only-here");
  const auto usage = disk_usage(dir->path() / "only-here");
  EXPECT_EQ(usage["allocated_bytes"], 0u);

  // The fork's name lives outside the measured dir: `linked` is not this dir's alone.
  const auto measured = dir->path() / "measured";
  std::filesystem::create_directory(measured);
  std::filesystem::rename(own, measured / "own");
  std::filesystem::rename(linked, measured / "linked");
  const auto u = disk_usage(measured);
  EXPECT_EQ(u["apparent_bytes"], 192u * 1024);
  EXPECT_GE(u["allocated_bytes"].get<std::uint64_t>(), 192u * 1024);
  EXPECT_GE(u["shared_bytes"].get<std::uint64_t>(), 128u * 1024);
  EXPECT_GE(u["owned_bytes"].get<std::uint64_t>(), 64u * 1024);
  EXPECT_EQ(u["shared_bytes"].get<std::uint64_t>() + u["owned_bytes"].get<std::uint64_t>(),
            u["allocated_bytes"].get<std::uint64_t>());
  EXPECT_TRUE(u["method"] == "fiemap" || u["method"] == "allocated") << u.dump();
}

}  // namespace
}  // namespace fcvm
