#include "state_file_header.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include "fcvm/temp_dir.h"

namespace fcvm::qemu {
namespace {

class StateFileHeaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create("fcvm-statehdr-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    tmp_dir_ = std::move(*made);
    dir_ = tmp_dir_.path();
  }
  TempDir tmp_dir_;
  std::filesystem::path dir_;
};

VmSpec spec() {
  VmSpec s;
  s.vcpus = 2;
  s.memory_mib = 384;
  s.kernel = "/k/vmlinux";
  s.initrd = "/k/initrd.gz";
  s.drives = {{"root", "/r", true}, {"data", "/d", false}};
  s.nics = {{"eth0", "tap0", "02:fc:00:00:00:02"}};
  s.agent_socket = "/a.sock";
  return s;
}

TEST_F(StateFileHeaderTest, RoundTripsAndFindsStream) {
  const auto h = StateFileHeader::from_spec(spec(), "console=ttyS0 reboot=t", "tcg");
  const std::string stream("QEVM\0\0\0\3binary\nstream", 20);
  {
    std::ofstream out(dir_ / "state", std::ios::binary);
    out << h.encode() << stream;
  }
  std::uint64_t offset = 0;
  auto back = StateFileHeader::read(dir_ / "state", &offset);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(offset, h.encode().size());
  EXPECT_EQ(back->vcpus, 2u);
  EXPECT_EQ(back->memory_mib, 384u);
  EXPECT_EQ(back->kernel, "/k/vmlinux");
  EXPECT_EQ(back->initrd, "/k/initrd.gz");
  EXPECT_EQ(back->cmdline, "console=ttyS0 reboot=t");
  EXPECT_EQ(back->drive_ids, (std::vector<std::string>{"root", "data"}));
  EXPECT_EQ(back->nic_ids, (std::vector<std::string>{"eth0"}));
  EXPECT_EQ(back->nic_macs, (std::vector<std::string>{"02:fc:00:00:00:02"}));
  EXPECT_TRUE(back->agent);
  EXPECT_EQ(back->accel, "tcg");
}

TEST_F(StateFileHeaderTest, RefusesOtherFiles) {
  std::ofstream(dir_ / "raw") << "QEVM raw migration stream without header";
  std::ofstream(dir_ / "json") << "{\"format\":\"something-else\"}\nrest";
  std::ofstream(dir_ / "future") << "{\"format\":\"fcvm-qemu-state\",\"version\":99}\n";
  for (const char* name : {"raw", "json", "future"}) {
    auto r = StateFileHeader::read(dir_ / name, nullptr);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), Errc::invalid_argument) << name;
  }
  auto missing = StateFileHeader::read(dir_ / "absent", nullptr);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Errc::not_found);
}

TEST_F(StateFileHeaderTest, ChecksCloneLayout) {
  const auto h = StateFileHeader::from_spec(spec(), "", "tcg");
  VmSpec clone = spec();
  clone.drives[0].path = "/elsewhere";
  clone.nics[0].tap = "tap9";
  EXPECT_TRUE(h.check_layout(clone).ok());
  clone.drives.pop_back();
  EXPECT_FALSE(h.check_layout(clone).ok());
  clone = spec();
  clone.nics.clear();
  EXPECT_FALSE(h.check_layout(clone).ok());
  clone = spec();
  clone.agent_socket.clear();
  EXPECT_FALSE(h.check_layout(clone).ok());
}

}  // namespace
}  // namespace fcvm::qemu
