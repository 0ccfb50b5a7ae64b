#include "etc_files.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "test_dir.h"

namespace fcvm::agent {
namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Plan plan_with_network() {
  Plan p;
  p.hostname = "web1";
  p.network = Network{"02:fc:00:00:00:02", "10.0.0.2", 24, "10.0.0.1", {"10.0.0.1", "1.1.1.1"}, 0};
  return p;
}

TEST(EtcFiles, RendersFromThePlan) {
  const Plan p = plan_with_network();
  EXPECT_EQ(EtcFiles::hostname_file(p), "web1\n");
  EXPECT_EQ(EtcFiles::hosts_file(p),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.2\tweb1\n");
  EXPECT_EQ(EtcFiles::resolv_conf(p), "nameserver 10.0.0.1\nnameserver 1.1.1.1\n");
  Plan offline;
  offline.hostname = "solo";
  EXPECT_NE(EtcFiles::hosts_file(offline).find("127.0.1.1\tsolo\n"), std::string::npos);
  EXPECT_EQ(EtcFiles::resolv_conf(offline), "");
}

TEST(EtcFiles, ReplacesFilesAndSymlinks) {
  TestDir t;
  std::filesystem::create_directories(t.path() / "etc");
  std::filesystem::create_symlink("../run/resolv.conf", t.path() / "etc/resolv.conf");
  ASSERT_TRUE(EtcFiles::write(plan_with_network(), t.path()));
  EXPECT_EQ(slurp(t.path() / "etc/hostname"), "web1\n");
  EXPECT_FALSE(std::filesystem::is_symlink(t.path() / "etc/resolv.conf"));
  EXPECT_EQ(slurp(t.path() / "etc/resolv.conf"), "nameserver 10.0.0.1\nnameserver 1.1.1.1\n");
  EXPECT_FALSE(std::filesystem::exists(t.path() / "run/resolv.conf"));
}

TEST(EtcFiles, CreatesEtcAndLeavesResolvConfWithoutDns) {
  TestDir t;
  Plan p;
  ASSERT_TRUE(EtcFiles::write(p, t.path()));
  EXPECT_TRUE(std::filesystem::exists(t.path() / "etc/hosts"));
  EXPECT_FALSE(std::filesystem::exists(t.path() / "etc/resolv.conf"));
}

}  // namespace
}  // namespace fcvm::agent
