#include "setup/initramfs_builder.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "fcvm/child_process.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

class InitramfsBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create(fs::temp_directory_path(), "fcvm-initramfs-test-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
    agent_ = dir_.path() / "fc-agent";
    write(agent_, "#!/bin/sh\necho pretend agent\n");
  }

  static void write(const fs::path& p, const std::string& content) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
  }

  // The archive's member names ("init", "dev", ...), via gzip -dc | cpio -t.
  static std::string listing(const fs::path& initrd) {
    auto out = run_command({"sh", "-c", "gzip -dc '" + initrd.string() + "' | cpio -t --quiet"});
    EXPECT_TRUE(out.ok()) << out.status().message();
    return out.ok() ? *out : "";
  }

  // `cpio -tv` line of one member.
  static std::string verbose_entry(const fs::path& initrd, const std::string& name) {
    auto out = run_command({"sh", "-c", "gzip -dc '" + initrd.string() +
                                            "' | cpio -tv --quiet 2>/dev/null | grep ' " + name + "$'"});
    return out.ok() ? *out : "";
  }

  fs::path data_dir() const { return dir_.path() / "data"; }

  TempDir dir_;
  fs::path agent_;
};

TEST_F(InitramfsBuilderTest, BuildsAnArchiveWithTheAgentAsInit) {
  InitramfsBuilder b(data_dir(), nullptr);
  auto initrd = b.ensure(agent_);
  ASSERT_TRUE(initrd.ok()) << initrd.status().message();
  InitramfsContents plain;
  plain.agent_binary = agent_;
  auto key = b.cache_key(plain);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->size(), 16u);
  EXPECT_EQ(*initrd, data_dir() / "initramfs" / *key / "initrd.gz");
  const std::string names = listing(*initrd);
  for (const char* want : {"\ninit\n", "\ndev\n", "\nproc\n", "\nsys\n", "\nrun\n", "\ntmp\n", "\netc\n"}) {
    EXPECT_NE(("\n" + names).find(want), std::string::npos) << want << " missing from:\n" << names;
  }
  const std::string init = verbose_entry(*initrd, "init");
  EXPECT_EQ(init.rfind("-rwxr-xr-x", 0), 0u) << init;
  EXPECT_NE(init.find(" root "), std::string::npos) << init;  // owned by 0:0
  EXPECT_EQ(verbose_entry(*initrd, "tmp").rfind("drwxrwxrwt", 0), 0u);
  EXPECT_EQ(verbose_entry(*initrd, "proc").rfind("drwxr-xr-x", 0), 0u);
  // Nothing left behind but the result and the lock file.
  for (const auto& e : fs::directory_iterator(data_dir() / "initramfs")) {
    const auto name = e.path().filename().string();
    EXPECT_TRUE(name == *key || name == ".lock") << name;
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(data_dir() / "initramfs" / *key),
                          fs::directory_iterator()), 1);
}

TEST_F(InitramfsBuilderTest, SecondEnsureIsANoOp) {
  InitramfsBuilder b(data_dir(), nullptr);
  auto first = b.ensure(agent_);
  ASSERT_TRUE(first.ok()) << first.status().message();
  const auto mtime = fs::last_write_time(*first);
  const auto inode = [](const fs::path& p) { struct stat st {}; ::stat(p.c_str(), &st); return st.st_ino; };
  const auto ino = inode(*first);
  auto second = b.ensure(agent_);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, *first);
  EXPECT_EQ(fs::last_write_time(*second), mtime);
  EXPECT_EQ(inode(*second), ino);
}

TEST_F(InitramfsBuilderTest, ReproducibleAndKeyedByContent) {
  InitramfsBuilder a(data_dir(), nullptr);
  InitramfsBuilder b(dir_.path() / "other", nullptr);
  auto one = a.ensure(agent_);
  auto two = b.ensure(agent_);
  ASSERT_TRUE(one.ok() && two.ok());
  auto bytes = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(bytes(*one), bytes(*two));
  write(agent_, "#!/bin/sh\necho a newer agent\n");
  auto three = a.ensure(agent_);
  ASSERT_TRUE(three.ok());
  EXPECT_NE(three->parent_path(), one->parent_path());
}

// The archive does not depend on when it was built: cpio's newc headers carry each entry's
// mtime, and every one is the epoch.
TEST_F(InitramfsBuilderTest, EveryEntryHasTheEpochAsItsMtime) {
  InitramfsBuilder b(data_dir(), nullptr);
  auto initrd = b.ensure(agent_);
  ASSERT_TRUE(initrd.ok()) << initrd.status().message();
  auto archive = run_command({"gzip", "-dc", initrd->string()});
  ASSERT_TRUE(archive.ok()) << archive.status().message();
  // newc: "070701", then 13 fields of 8 hex digits (mtime is the 6th, namesize the 12th),
  // then the name; header+name and the data are each padded to 4 bytes.
  auto field = [&](size_t at, int n) { return std::stoul(archive->substr(at + 6 + 8 * n, 8), nullptr, 16); };
  auto pad4 = [](size_t n) { return (n + 3) & ~size_t{3}; };
  int entries = 0;
  for (size_t at = 0; at + 110 <= archive->size();) {
    ASSERT_EQ(archive->compare(at, 6, "070701"), 0) << "bad header at " << at;
    const size_t name_size = field(at, 11), file_size = field(at, 6);
    const std::string name = archive->substr(at + 110, name_size - 1);
    if (name == "TRAILER!!!") break;
    EXPECT_EQ(field(at, 5), 0u) << name;
    ++entries;
    at = pad4(pad4(at + 110 + name_size) + file_size);
  }
  EXPECT_GE(entries, 8);
}

TEST_F(InitramfsBuilderTest, AddsExtraFilesAndSymlinks) {
  const fs::path tool = dir_.path() / "tool";
  write(tool, "tool bytes");
  InitramfsContents c;
  c.agent_binary = agent_;
  c.extra_files.push_back(InitramfsFile{tool, "bin/tool", 0700});
  c.symlinks.push_back(InitramfsSymlink{"bin/alias", "tool"});
  InitramfsBuilder b(data_dir(), nullptr);
  auto initrd = b.ensure(c);
  ASSERT_TRUE(initrd.ok()) << initrd.status().message();
  InitramfsContents plain;
  plain.agent_binary = agent_;
  EXPECT_NE(b.cache_key(c).value(), b.cache_key(plain).value());
  EXPECT_EQ(verbose_entry(*initrd, "bin/tool").rfind("-rwx------", 0), 0u);
  EXPECT_NE(verbose_entry(*initrd, "bin/alias -> tool").find("lrwxrwxrwx"), std::string::npos);
}

TEST_F(InitramfsBuilderTest, MissingAgentSaysHowToGetIt) {
  InitramfsBuilder b(data_dir(), nullptr);
  auto r = b.ensure(dir_.path() / "nope");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::not_found);
  EXPECT_NE(r.status().message().find("fc-agent not found at"), std::string::npos);
  EXPECT_NE(r.status().message().find("--target fc-agent"), std::string::npos);
}

TEST_F(InitramfsBuilderTest, RejectsPathsOutsideTheArchive) {
  InitramfsBuilder b(data_dir(), nullptr);
  InitramfsContents escape;
  escape.agent_binary = agent_;
  escape.extra_files.push_back(InitramfsFile{agent_, "../escape", 0755});
  auto r = b.ensure(escape);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::invalid_argument);
  InitramfsContents absolute;
  absolute.agent_binary = agent_;
  absolute.symlinks.push_back(InitramfsSymlink{"/bin/sh", "busybox"});
  auto abs = b.ensure(absolute);
  EXPECT_EQ(abs.status().code(), Errc::invalid_argument);
}

}  // namespace
}  // namespace fcvm
