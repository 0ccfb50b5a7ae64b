#include "run/startup_cache.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <set>

#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

class StartupCacheKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create(std::filesystem::temp_directory_path(), "startup-cache-test-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_.emplace(std::move(*dir));
    base_.image_digest = "sha256:aaaa";
    base_.process.args = {"sh", "-c", "echo hi"};
    base_.process.env = {"PATH=/bin", "A=1"};
    base_.assets.kernel = dir_->path() / "vmlinux";
    base_.assets.initrd = dir_->path() / "initrd";
    std::ofstream(base_.assets.kernel) << "kernel";
    std::ofstream(base_.assets.initrd) << "initrd";
    base_.plugins = {{PluginKind::vmm, "vmm-qemu"}, {PluginKind::storage, "storage-squashfs"}};
  }
  std::string key(const StartupInputs& in) {
    auto k = startup_cache_key(in);
    EXPECT_TRUE(k.ok()) << k.status().message();
    return k.ok() ? *k : "";
  }

  std::optional<TempDir> dir_;
  StartupInputs base_;
};

TEST_F(StartupCacheKeyTest, SameInputsSameKeyAndAnyChangeMisses) {
  const std::string k = key(base_);
  EXPECT_EQ(k.size(), 64u);
  EXPECT_EQ(key(base_), k);
  EXPECT_EQ(startup_cache_tag(k), "cache-" + k.substr(0, 20));

  std::vector<std::function<void(StartupInputs&)>> changes = {
      [](StartupInputs& in) { in.image_digest = "sha256:bbbb"; },
      [](StartupInputs& in) { in.process.args.back() = "echo ho"; },
      [](StartupInputs& in) { in.process.env.push_back("B=2"); },
      [](StartupInputs& in) { in.process.cwd = "/tmp"; },
      [](StartupInputs& in) { in.process.uid = 1000; },
      [](StartupInputs& in) { in.process.gid = 1000; },
      [](StartupInputs& in) { in.vcpus = 2; },
      [](StartupInputs& in) { in.memory_mib = 512; },
      [](StartupInputs& in) { in.plugins[PluginKind::network] = "network-bridged"; },
      [](StartupInputs& in) { in.plugins[PluginKind::storage] = "storage-btrfs"; },
      [](StartupInputs& in) { in.vmm_version = "0.2.0"; },
      [&](StartupInputs& in) { std::ofstream(in.assets.kernel, std::ios::app) << "rebuilt"; },
      [&](StartupInputs& in) { std::ofstream(in.assets.initrd, std::ios::app) << "new agent"; },
  };
  std::set<std::string> seen = {k};
  for (size_t i = 0; i < changes.size(); ++i) {
    StartupInputs changed = base_;
    changes[i](changed);
    EXPECT_TRUE(seen.insert(key(changed)).second) << "change " << i << " kept the key";
  }
}

TEST_F(StartupCacheKeyTest, AMissingGuestAssetIsAnError) {
  StartupInputs in = base_;
  in.assets.kernel = dir_->path() / "nosuch";
  auto k = startup_cache_key(in);
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("nosuch"), std::string::npos) << k.status().message();
}

}  // namespace
}  // namespace fcvm
