#include "session/startup_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <ctime>

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
      [](StartupInputs& in) { in.read_only = true; },
      [](StartupInputs& in) { in.memory_mib = 512; },
      [](StartupInputs& in) { in.plugins[PluginKind::network] = "network-bridged"; },
      [](StartupInputs& in) { in.plugins[PluginKind::storage] = "storage-btrfs"; },
      [](StartupInputs& in) { in.vmm_version = "0.2.0"; },
      [](StartupInputs& in) { in.moment = startup_moment_of(HealthCheckSpec{{"true"}, ""}); },
      [](StartupInputs& in) { in.moment = startup_moment_of(HealthCheckSpec{{}, "http://:80/"}); },
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

// The health check's timings decide how soon "healthy" is seen, not what it means.
TEST(StartupMoment, IsTheCheckNotItsTimings) {
  EXPECT_EQ(startup_moment_of(HealthCheckSpec{}), "");
  HealthCheckSpec a{{"wget", "-q", "localhost"}, ""};
  HealthCheckSpec b = a;
  b.interval = std::chrono::seconds(1);
  b.retries = 9;
  EXPECT_EQ(startup_moment_of(a), startup_moment_of(b));
  b.command.back() = "otherhost";
  EXPECT_NE(startup_moment_of(a), startup_moment_of(b));
}

TEST(StartupOutput, RoundTripsAndRefusesWhatItDidNotWrite) {
  const std::vector<OutputChunk> chunks = {{false, "hello\n"}, {true, std::string("\0\xff", 2)}, {false, ""}};
  auto back = decode_startup_output(encode_startup_output(chunks));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, chunks);
  EXPECT_TRUE(decode_startup_output("").value().empty());
  const std::string good = encode_startup_output(chunks);
  for (const std::string& bad : {std::string("x\1\0\0\0a"), good.substr(0, good.size() - 1), std::string("o\xff\xff\xff\x7f")}) {
    auto r = decode_startup_output(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Errc::protocol);
  }
  // Larger than a cached entry may hold: refused even when the bytes are there.
  const std::string big = encode_startup_output({{false, std::string(kMaxStartupOutput + 1, 'a')}});
  EXPECT_FALSE(decode_startup_output(big).ok());
}

TEST_F(StartupCacheKeyTest, AMissingGuestAssetIsAnError) {
  StartupInputs in = base_;
  in.assets.kernel = dir_->path() / "nosuch";
  auto k = startup_cache_key(in);
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("nosuch"), std::string::npos) << k.status().message();
}

// A cached entry as the store holds it, last used `age_s` seconds ago.
void add_entry(SnapshotStore& store, const std::string& tag, const std::string& key, int age_s) {
  auto building = store.begin(tag);
  ASSERT_TRUE(building.ok()) << building.status().message();
  SnapshotManifest m;
  m.tag = tag;
  m.cache_key = key;
  m.main_process.args = {"true"};
  ASSERT_TRUE(write_snapshot_manifest(building->path(), m).ok());
  ASSERT_TRUE(store.commit(*building, tag).ok());
  const timespec when[2] = {{::time(nullptr) - age_s, 0}, {::time(nullptr) - age_s, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, store.dir_of(tag).c_str(), when, 0), 0);
}

TEST_F(StartupCacheKeyTest, PruningKeepsTheMostRecentlyUsedAndNeverTheCurrentOrPlainSnapshots) {
  SnapshotStore store(dir_->path() / "data");
  add_entry(store, "cache-old", "k1", 300);
  add_entry(store, "cache-mid", "k2", 200);
  add_entry(store, "cache-new", "k3", 100);
  add_entry(store, "cache-current", "k4", 400);  // just taken, though its clock says old
  add_entry(store, "plain", "", 500);            // a user's snapshot: not the cache's
  touch_startup_snapshot(store.dir_of("cache-old"));  // a hit makes it the most recent

  std::set<std::string> asked;
  auto removed = prune_startup_snapshots(
      store, "cache-current", 2,
      [&](const StoredSnapshot& s) {
        asked.insert(s.manifest.tag);
        if (s.manifest.tag == "cache-new") return error(Errc::invalid_argument, "another storage plugin");
        return store.remove(s.manifest.tag);
      },
      null_logger());
  EXPECT_EQ(asked, (std::set<std::string>{"cache-mid", "cache-new"}));
  EXPECT_EQ(removed, std::vector<std::string>{"cache-mid"});
  std::set<std::string> left;
  for (const auto& s : store.list()) left.insert(s.manifest.tag);
  EXPECT_EQ(left, (std::set<std::string>{"cache-current", "cache-old", "cache-new", "plain"}));
}

}  // namespace
}  // namespace fcvm
