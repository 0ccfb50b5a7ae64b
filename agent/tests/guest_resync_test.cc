#include "guest_resync.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "test_dir.h"

namespace fcvm::agent {
namespace {

TEST(GuestResync, DecodesLowercaseHexOnly) {
  EXPECT_EQ(decode_hex("00ff7a"), (std::vector<unsigned char>{0x00, 0xff, 0x7a}));
  EXPECT_TRUE(decode_hex("abc").empty());
  EXPECT_TRUE(decode_hex("zz").empty());
  EXPECT_TRUE(decode_hex("AB").empty());
}

// A file that is not the RNG refuses RNDADDENTROPY; the bytes are then written as data,
// which is what /dev/urandom mixes in.
TEST(GuestResync, EntropyFallsBackToAPlainWrite) {
  TestDir dir;
  const auto sink = dir.path() / "urandom";
  std::ofstream(sink).close();
  const std::vector<unsigned char> bytes(32, 0x5a);
  EXPECT_TRUE(add_entropy(bytes, sink.c_str()));
  std::ifstream in(sink, std::ios::binary);
  const std::string written((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(written, std::string(32, '\x5a'));
  EXPECT_FALSE(add_entropy({}, sink.c_str()));
  EXPECT_FALSE(add_entropy(bytes, (dir.path() / "missing/urandom").c_str()));
}

TEST(GuestResync, EmptyOrMissingNeighbourTableIsNothingToFlush) {
  TestDir dir;
  const auto table = dir.path() / "arp";
  std::ofstream(table) << "IP address       HW type     Flags       HW address            Mask     Device\n";
  EXPECT_TRUE(flush_neighbour_cache(table.c_str()));
  EXPECT_TRUE(flush_neighbour_cache((dir.path() / "none").c_str()));
}

// An entry on an interface that does not exist cannot be deleted: reported, not thrown.
TEST(GuestResync, ReportsAnEntryItCouldNotDelete) {
  TestDir dir;
  const auto table = dir.path() / "arp";
  std::ofstream(table) << "IP address       HW type     Flags       HW address            Mask     Device\n"
                          "10.254.254.254   0x1         0x2         02:fc:00:00:00:09     *        fcvm-nosuch0\n";
  EXPECT_FALSE(flush_neighbour_cache(table.c_str()));
}

}  // namespace
}  // namespace fcvm::agent
