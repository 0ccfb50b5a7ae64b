// Plugin config, per-VM options, version checks, host detection and fault mapping.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "api_client.h"
#include "firecracker_config.h"
#include "firecracker_options.h"
#include "firecracker_version.h"
#include "host_support.h"

namespace fcvm::firecracker {
namespace {

namespace fs = std::filesystem;

TEST(FirecrackerConfig, ParsesBinaryAndRefusesUnknownKeys) {
  auto defaults = FirecrackerConfig::parse(nullptr);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->binary, "firecracker");
  auto set = FirecrackerConfig::parse({{"binary", "/opt/fc/firecracker"}});
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->binary, "/opt/fc/firecracker");
  auto unknown = FirecrackerConfig::parse({{"jailer", "x"}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("'jailer'"), std::string::npos);
  EXPECT_FALSE(FirecrackerConfig::parse({{"binary", ""}}).ok());
  EXPECT_FALSE(FirecrackerConfig::parse({{"binary", 3}}).ok());
  EXPECT_FALSE(FirecrackerConfig::parse("firecracker").ok());
}

TEST(FirecrackerOptions, SnapshotType) {
  auto defaults = FirecrackerOptions::parse(nlohmann::json::object());
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->snapshot_type, SnapshotType::full);
  EXPECT_FALSE(defaults->track_dirty_pages());
  auto diff = FirecrackerOptions::parse({{"snapshot_type", "Diff"}});
  ASSERT_TRUE(diff.ok());
  EXPECT_TRUE(diff->track_dirty_pages());
  auto bad = FirecrackerOptions::parse({{"snapshot_type", "diff"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("\"Full\" or \"Diff\""), std::string::npos);
  auto unknown = FirecrackerOptions::parse({{"balloon", true}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("'balloon'"), std::string::npos);
}

TEST(FirecrackerVersion, ParsesBannerAndApiForms) {
  auto banner = FirecrackerVersion::parse("Firecracker v1.16.1\n\n");
  ASSERT_TRUE(banner.has_value());
  EXPECT_EQ(banner->major, 1u);
  EXPECT_EQ(banner->minor, 16u);
  EXPECT_EQ(banner->patch, 1u);
  auto api = FirecrackerVersion::parse("1.17.0-dev");
  ASSERT_TRUE(api.has_value());
  EXPECT_EQ(api->minor, 17u);
  EXPECT_FALSE(FirecrackerVersion::parse("QEMU emulator version 7.2.0").has_value());
  EXPECT_FALSE(FirecrackerVersion::parse("v1.16").has_value());
  EXPECT_FALSE(FirecrackerVersion::parse("1.16.1x").has_value());
  EXPECT_FALSE(FirecrackerVersion::parse("").has_value());
}

TEST(FirecrackerVersion, AcceptsTheApiItSpeaks) {
  EXPECT_TRUE(FirecrackerVersion::parse("1.16.0")->check().ok());
  EXPECT_TRUE(FirecrackerVersion::parse("1.17.0-dev")->check().ok());
  const Status old = FirecrackerVersion::parse("Firecracker v1.15.1")->check();
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.code(), Errc::unavailable);
  EXPECT_NE(old.message().find("v1.15.1"), std::string::npos) << old.message();
  EXPECT_NE(old.message().find("1.16"), std::string::npos) << old.message();
  EXPECT_FALSE(FirecrackerVersion::parse("2.0.0")->check().ok());
}

class HostSupportTree : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fcvm-fc-host-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ / "sys");
  }
  void TearDown() override { fs::remove_all(root_); }
  void touch(const fs::path& p) { std::ofstream(root_ / p) << ""; }
  HostSupport detect() {
    return HostSupport::detect(root_ / "sys", root_ / "kvm", root_ / "userfaultfd");
  }
  fs::path root_;
};

TEST_F(HostSupportTree, PvmIsNotHardwareKvm) {
  fs::create_directories(root_ / "sys/kvm_pvm");
  touch("kvm");
  const HostSupport host = detect();
  EXPECT_FALSE(host.kvm);
  EXPECT_NE(host.kvm_problem.find("kvm_pvm"), std::string::npos) << host.kvm_problem;
  EXPECT_NE(host.kvm_problem.find("vmm-qemu"), std::string::npos) << host.kvm_problem;
}

TEST_F(HostSupportTree, NoKvmModule) {
  const HostSupport host = detect();
  EXPECT_FALSE(host.kvm);
  EXPECT_NE(host.kvm_problem.find("modprobe kvm_intel"), std::string::npos) << host.kvm_problem;
}

TEST_F(HostSupportTree, ModuleButNoDevice) {
  fs::create_directories(root_ / "sys/kvm_intel");
  const HostSupport host = detect();
  EXPECT_FALSE(host.kvm);
  EXPECT_NE(host.kvm_problem.find("does not open read-write"), std::string::npos) << host.kvm_problem;
  EXPECT_FALSE(host.uffd);
  EXPECT_NE(host.uffd_problem.find("userfaultfd"), std::string::npos) << host.uffd_problem;
}

TEST_F(HostSupportTree, EverythingPresent) {
  fs::create_directories(root_ / "sys/kvm_amd");
  touch("kvm");
  touch("userfaultfd");
  const HostSupport host = detect();
  EXPECT_TRUE(host.kvm) << host.kvm_problem;
  EXPECT_TRUE(host.uffd) << host.uffd_problem;
}

TEST(ApiClientFault, NamesTheCallAndQuotesFirecracker) {
  const ApiRequest request{"PUT", "/drives/root", "/drives/{drive_id}", {{"drive_id", "root"}}};
  const Status bad = ApiClient::fault(request, {400, R"({"fault_message":"Unable to open block device"})"});
  EXPECT_EQ(bad.code(), Errc::invalid_argument);
  EXPECT_EQ(bad.message(), "PUT /drives/root: Firecracker answered 400 Bad Request: Unable to open block device");
  const Status internal = ApiClient::fault(request, {500, "not json\x01"});
  EXPECT_EQ(internal.code(), Errc::io);
  EXPECT_NE(internal.message().find("500"), std::string::npos);
  EXPECT_NE(internal.message().find("(no fault_message) not json?"), std::string::npos) << internal.message();
  const Status empty = ApiClient::fault(request, {404, ""});
  EXPECT_NE(empty.message().find("(empty body)"), std::string::npos);
}

}  // namespace
}  // namespace fcvm::firecracker
