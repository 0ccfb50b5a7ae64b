#include "image/image_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "fcvm/child_process.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

fs::path source_dir() {
#ifdef FCVM_SOURCE_DIR
  return FCVM_SOURCE_DIR;
#else
  return fs::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
#endif
}

TempDir make_temp_dir(const std::string& prefix) {
  auto made = TempDir::create(prefix);
  if (!made.ok()) throw std::runtime_error(made.status().message());
  return std::move(*made);
}

// Names in `dir`, sorted.
std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

ino_t inode_of(const fs::path& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Builds the example image once for the suite, plus a variant with a different config
// (so a different digest) for tests that need two images.
class ImageStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixtures_dir_ = new TempDir(make_temp_dir("fcvm-image-fixtures-"));
    fixtures_ = new fs::path(fixtures_dir_->path());
    auto built = run_command(
        {(source_dir() / "examples/hello/build.sh").string(), (*fixtures_ / "hello").string()});
    ASSERT_TRUE(built.ok()) << built.status().message();
    fs::copy(*fixtures_ / "hello", *fixtures_ / "hello2", fs::copy_options::recursive);
    auto changed =
        run_command({"umoci", "config", "--image", (*fixtures_ / "hello2").string() + ":hello",
                     "--config.env", "VARIANT=2", "--no-history"});
    ASSERT_TRUE(changed.ok()) << changed.status().message();
  }
  static void TearDownTestSuite() {
    delete fixtures_;
    delete fixtures_dir_;
  }

  void SetUp() override {
    data_dir_ = make_temp_dir("fcvm-image-test-");
    data_ = data_dir_.path();
  }

  static std::string hello_ref() { return "oci:" + (*fixtures_ / "hello").string() + ":hello"; }
  static std::string hello2_ref() { return "oci:" + (*fixtures_ / "hello2").string() + ":hello"; }
  fs::path images() const { return data_ / "images"; }

  static TempDir* fixtures_dir_;
  static fs::path* fixtures_;
  TempDir data_dir_;
  fs::path data_;
};

TempDir* ImageStoreTest::fixtures_dir_ = nullptr;
fs::path* ImageStoreTest::fixtures_ = nullptr;

TEST_F(ImageStoreTest, PullsUnpacksAndParsesConfig) {
  ImageStore store(data_);
  auto pulled = store.pull(hello_ref());
  ASSERT_TRUE(pulled.ok()) << pulled.status().message();
  EXPECT_FALSE(pulled->cache_hit);
  const StoredImage& image = pulled->image;

  ASSERT_EQ(image.digest.size(), 7u + 64u);
  EXPECT_EQ(image.digest.substr(0, 7), "sha256:");
  EXPECT_EQ(image.dir, images() / image.digest.substr(7));
  EXPECT_TRUE(fs::is_regular_file(image.rootfs() / "bin/busybox"));
  EXPECT_TRUE(fs::is_symlink(image.rootfs() / "bin/sh"));
  EXPECT_TRUE(fs::is_regular_file(image.rootfs() / "hello.sh"));
  EXPECT_TRUE(fs::is_regular_file(image.rootfs() / "www/index.html"));
  EXPECT_TRUE(fs::is_regular_file(image.dir / "image.json"));
  EXPECT_GT(image.size_bytes, 1'000'000u);
  EXPECT_EQ(image.refs, std::vector<std::string>{hello_ref()});
  EXPECT_FALSE(image.pulled.empty());
  EXPECT_EQ(image.as_rootfs().digest, image.digest);

  const ImageConfig& c = image.config;
  EXPECT_TRUE(c.entrypoint.empty());
  EXPECT_EQ(c.cmd, (std::vector<std::string>{"/bin/sh", "/hello.sh"}));
  EXPECT_EQ(c.argv(), c.cmd);
  EXPECT_NE(std::find(c.env.begin(), c.env.end(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"),
            c.env.end());
  EXPECT_EQ(c.working_dir, "/");
  EXPECT_EQ(c.exposed_ports, std::vector<std::string>{"80/tcp"});
  EXPECT_EQ(c.labels.at("org.opencontainers.image.title"), "hello");
  EXPECT_EQ(c.created, "2024-01-01T00:00:00Z");
  EXPECT_EQ(c.architecture, "amd64");
  EXPECT_EQ(c.os, "linux");

  // Only the image, the refs and the lock remain: no temp dirs.
  EXPECT_EQ(entries(images()),
            (std::vector<std::string>{".lock", image.digest.substr(7), "refs.json"}));

  // A fresh store object reads the same back from disk.
  auto resolved = ImageStore(data_).resolve(hello_ref());
  ASSERT_TRUE(resolved.ok()) << resolved.status().message();
  EXPECT_EQ(resolved->digest, image.digest);
  EXPECT_EQ(resolved->config.cmd, c.cmd);
  EXPECT_EQ(resolved->config.exposed_ports, c.exposed_ports);
  EXPECT_EQ(resolved->size_bytes, image.size_bytes);
}

TEST_F(ImageStoreTest, SecondPullIsACacheHit) {
  ImageStore store(data_);
  auto first = store.pull(hello_ref());
  ASSERT_TRUE(first.ok()) << first.status().message();
  const ino_t rootfs_inode = inode_of(first->image.rootfs());

  auto second = store.pull(hello_ref());
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_TRUE(second->cache_hit);
  EXPECT_EQ(second->image.digest, first->image.digest);
  EXPECT_EQ(inode_of(second->image.rootfs()), rootfs_inode);

  // The same image under another reference (the layout's only image, no tag): still cached,
  // and now it has two references.
  auto untagged = store.pull("oci:" + (*fixtures_ / "hello").string());
  ASSERT_TRUE(untagged.ok()) << untagged.status().message();
  EXPECT_TRUE(untagged->cache_hit);
  EXPECT_EQ(untagged->image.refs.size(), 2u);
  EXPECT_EQ(entries(images()).size(), 3u);
}

TEST_F(ImageStoreTest, ConcurrentPullsStoreOneImage) {
  std::vector<Result<PullResult>> results(4, Status(Errc::internal, "not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = ImageStore(data_).pull(hello_ref()); });
  }
  for (auto& t : threads) t.join();
  int stored = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->image.digest, results[0]->image.digest);
    if (!r->cache_hit) ++stored;
  }
  EXPECT_EQ(stored, 1);
  EXPECT_EQ(entries(images()).size(), 3u);  // .lock, the image, refs.json
}

TEST_F(ImageStoreTest, ReferencesAreCanonical) {
  auto rel = ImageStore::canonical_reference("oci:some/dir/:tag");
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(*rel, "oci:" + (fs::current_path() / "some/dir").string() + ":tag");
  EXPECT_EQ(*ImageStore::canonical_reference("docker://busybox:1.36"), "docker://busybox:1.36");
  EXPECT_EQ(*ImageStore::canonical_reference("oci-archive:/a/../b.tar"), "oci-archive:/b.tar");

  auto bare = ImageStore::canonical_reference("busybox");
  ASSERT_FALSE(bare.ok());
  EXPECT_EQ(bare.status().code(), Errc::invalid_argument);
  EXPECT_NE(bare.status().message().find("oci:DIR[:TAG]"), std::string::npos);
  EXPECT_NE(bare.status().message().find("docker://"), std::string::npos);
  EXPECT_FALSE(ImageStore::canonical_reference("oci:").ok());
}

TEST_F(ImageStoreTest, BareReferenceIsRefusedWithoutTouchingDisk) {
  auto pulled = ImageStore(data_).pull("busybox:latest");
  ASSERT_FALSE(pulled.ok());
  EXPECT_EQ(pulled.status().code(), Errc::invalid_argument);
  EXPECT_FALSE(fs::exists(images()));
}

TEST_F(ImageStoreTest, MissingImageIsAOneLineErrorAndLeavesNothing) {
  ImageStore store(data_);
  const std::string missing_dir = "oci:" + (data_ / "no-such-layout").string() + ":hello";
  auto pulled = store.pull(missing_dir);
  ASSERT_FALSE(pulled.ok());
  EXPECT_EQ(pulled.status().code(), Errc::not_found);
  const std::string m = pulled.status().message();
  EXPECT_NE(m.find(missing_dir), std::string::npos) << m;
  EXPECT_NE(m.find("no such file"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  EXPECT_EQ(m.find("level=fatal"), std::string::npos) << m;

  const std::string missing_tag = "oci:" + (*fixtures_ / "hello").string() + ":nope";
  auto untagged = store.pull(missing_tag);
  ASSERT_FALSE(untagged.ok());
  EXPECT_NE(untagged.status().message().find(missing_tag), std::string::npos);
  EXPECT_NE(untagged.status().message().find("nope"), std::string::npos);

  EXPECT_EQ(entries(images()), std::vector<std::string>{".lock"});
  EXPECT_FALSE(store.resolve(missing_dir).ok());
}

TEST_F(ImageStoreTest, CorruptLayerFailsAndLeavesNothing) {
  // A copy of the layout whose largest blob (the layer) is cut short.
  const fs::path broken = data_ / "broken";
  fs::copy(*fixtures_ / "hello", broken, fs::copy_options::recursive);
  fs::path layer;
  for (const auto& e : fs::directory_iterator(broken / "blobs/sha256")) {
    if (layer.empty() || fs::file_size(e.path()) > fs::file_size(layer)) layer = e.path();
  }
  fs::resize_file(layer, fs::file_size(layer) / 2);

  ImageStore store(data_);
  auto pulled = store.pull("oci:" + broken.string() + ":hello");
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.status().message().find("oci:" + broken.string()), std::string::npos);
  EXPECT_EQ(pulled.status().message().find('\n'), std::string::npos);
  EXPECT_EQ(entries(images()), std::vector<std::string>{".lock"});
}

TEST_F(ImageStoreTest, StaleTempDirsAreSwept) {
  fs::create_directories(images() / ".tmp-crashed/layout");
  auto pulled = ImageStore(data_).pull(hello_ref());
  ASSERT_TRUE(pulled.ok()) << pulled.status().message();
  EXPECT_FALSE(fs::exists(images() / ".tmp-crashed"));
}

TEST_F(ImageStoreTest, ListsResolvesAndRemoves) {
  ImageStore store(data_);
  auto one = store.pull(hello_ref());
  auto two = store.pull(hello2_ref());
  ASSERT_TRUE(one.ok()) << one.status().message();
  ASSERT_TRUE(two.ok()) << two.status().message();
  ASSERT_NE(one->image.digest, two->image.digest);
  EXPECT_NE(std::find(two->image.config.env.begin(), two->image.config.env.end(), "VARIANT=2"),
            two->image.config.env.end());

  auto listed = store.list();
  ASSERT_TRUE(listed.ok()) << listed.status().message();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_LT((*listed)[0].refs.front(), (*listed)[1].refs.front());  // sorted by reference

  // Resolve by digest, by digest prefix with and without the algorithm.
  const std::string hex = one->image.digest.substr(7);
  EXPECT_EQ(store.resolve(one->image.digest)->digest, one->image.digest);
  EXPECT_EQ(store.resolve(hex.substr(0, 12))->digest, one->image.digest);
  EXPECT_EQ(store.resolve("sha256:" + hex.substr(0, 12))->digest, one->image.digest);
  EXPECT_EQ(store.resolve("not-a-digest").status().code(), Errc::not_found);

  // Dropping one of two references keeps the image.
  ASSERT_TRUE(store.pull("oci:" + (*fixtures_ / "hello").string()).ok());
  ASSERT_TRUE(store.remove(hello_ref()).ok());
  EXPECT_TRUE(fs::is_directory(one->image.dir));
  EXPECT_FALSE(store.resolve(hello_ref()).ok());

  // Removing by digest prefix deletes the image and its remaining reference.
  ASSERT_TRUE(store.remove(hex.substr(0, 8)).ok());
  EXPECT_FALSE(fs::exists(one->image.dir));
  EXPECT_FALSE(store.resolve("oci:" + (*fixtures_ / "hello").string()).ok());

  // Removing the last reference of an image deletes it.
  Status removed = store.remove(hello2_ref());
  ASSERT_TRUE(removed.ok()) << removed.message();
  EXPECT_FALSE(fs::exists(two->image.dir));
  EXPECT_TRUE(store.list()->empty());
  EXPECT_EQ(entries(images()), (std::vector<std::string>{".lock", "refs.json"}));

  Status again = store.remove(hello2_ref());
  EXPECT_EQ(again.code(), Errc::not_found);
}

TEST(ImageConfigTest, ParsesDockerStyleNullsAndRejectsWrongTypes) {
  auto parsed = ImageConfig::from_oci(
      R"({"architecture":"arm64","os":"linux","config":{"Entrypoint":["/init"],"Cmd":null,)"
      R"("Env":null,"User":"1000:1000","Volumes":{"/data":{},"/cache":{}},"StopSignal":"SIGTERM"}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->entrypoint, std::vector<std::string>{"/init"});
  EXPECT_TRUE(parsed->cmd.empty());
  EXPECT_EQ(parsed->user, "1000:1000");
  EXPECT_EQ(parsed->volumes, (std::vector<std::string>{"/cache", "/data"}));
  EXPECT_EQ(parsed->stop_signal, "SIGTERM");

  // Round trip through fcvm's own form.
  nlohmann::json j = *parsed;
  EXPECT_EQ(j.at("entrypoint"), nlohmann::json::array({"/init"}));
  auto back = j.get<ImageConfig>();
  EXPECT_EQ(back.volumes, parsed->volumes);
  EXPECT_EQ(back.user, parsed->user);

  auto wrong = ImageConfig::from_oci(R"({"config":{"Cmd":"echo hi"}})");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("config.Cmd"), std::string::npos);
  EXPECT_FALSE(ImageConfig::from_oci("not json").ok());
  EXPECT_TRUE(ImageConfig::from_oci("{}").ok());
}

}  // namespace
}  // namespace fcvm
