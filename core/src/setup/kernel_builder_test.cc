#include "setup/kernel_builder.h"
#include "setup/kernel_fragment.h"
#include "setup/sha256.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm_guest_kernel_config.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;
using kernel_build::cache_key;
using kernel_build::is_compile_step;
using kernel_build::parse_fragment;
using kernel_build::progress_percent;
using kernel_build::unmet_requirements;

TEST(KernelCacheKey, SixteenHexDigitsOfVersionAndFragment) {
  const std::string key = cache_key("6.1.192-2", "CONFIG_A=y\n");
  EXPECT_EQ(key, sha256_hex("6.1.192-2\nCONFIG_A=y\n").substr(0, 16));
  EXPECT_EQ(key.size(), 16u);
  EXPECT_NE(key, cache_key("6.1.192-3", "CONFIG_A=y\n"));
  EXPECT_NE(key, cache_key("6.1.192-2", "CONFIG_A=y\nCONFIG_B=y\n"));
  // The separator keeps (version, fragment) pairs with the same concatenation apart.
  EXPECT_NE(cache_key("6.1", "2CONFIG_A=y"), cache_key("6.12", "CONFIG_A=y"));
}

TEST(KernelConfig, ParsesFragmentLines) {
  const auto reqs = parse_fragment(
      "# a comment\n"
      "\n"
      "CONFIG_64BIT=y\n"
      "# CONFIG_MODULES is not set\n"
      "CONFIG_NR_CPUS=8\n"
      "  CONFIG_CMDLINE=\"console=ttyS0\"  \n"
      "CONFIG_NR_CPUS=16\n"
      "#CONFIG_NOT_A_REQUIREMENT=y\n"
      "CONFIG_=y\n");
  ASSERT_EQ(reqs.size(), 4u);
  EXPECT_EQ(reqs[0].name, "64BIT");
  EXPECT_EQ(reqs[0].value, "y");
  EXPECT_EQ(reqs[1].name, "MODULES");
  EXPECT_EQ(reqs[1].value, "");
  EXPECT_EQ(reqs[2].name, "NR_CPUS");
  EXPECT_EQ(reqs[2].value, "16");  // a later line wins, as in merge_config.sh
  EXPECT_EQ(reqs[3].name, "CMDLINE");
  EXPECT_EQ(reqs[3].value, "\"console=ttyS0\"");
}

TEST(KernelConfig, AllMet) {
  const std::string fragment = "CONFIG_A=y\n# CONFIG_MODULES is not set\nCONFIG_N=4\n";
  const std::string config =
      "#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_A=y\nCONFIG_N=4\n"
      "# CONFIG_MODULES is not set\nCONFIG_OTHER=y\n";
  EXPECT_TRUE(unmet_requirements(fragment, config).empty());
  // An unset requirement is also met when the option does not appear at all.
  EXPECT_TRUE(unmet_requirements("# CONFIG_X is not set\n", "CONFIG_A=y\n").empty());
}

TEST(KernelConfig, NamesDroppedAndWrongOptions) {
  const std::string fragment =
      "CONFIG_MISC_FILESYSTEMS=y\nCONFIG_SQUASHFS=y\nCONFIG_N=4\n# CONFIG_MODULES is not set\n"
      "CONFIG_GONE=y\n";
  const std::string config =
      "CONFIG_MISC_FILESYSTEMS=y\n# CONFIG_SQUASHFS is not set\nCONFIG_N=8\nCONFIG_MODULES=y\n";
  const auto unmet = unmet_requirements(fragment, config);
  ASSERT_EQ(unmet.size(), 4u);
  EXPECT_EQ(unmet[0], "CONFIG_SQUASHFS=y (is not set)");
  EXPECT_EQ(unmet[1], "CONFIG_N=4 (is 8)");
  EXPECT_EQ(unmet[2], "CONFIG_MODULES unset (is y)");
  EXPECT_EQ(unmet[3], "CONFIG_GONE=y (is not set)");
}

TEST(KernelConfig, ShippedFragment) {
  const auto reqs = parse_fragment(kGuestKernelConfigFragment);
  EXPECT_GT(reqs.size(), 60u);
  bool modules_off = false, cmdline_devices = false, pvh = false;
  for (const auto& r : reqs) {
    if (r.name == "MODULES") modules_off = r.value.empty();
    if (r.name == "VIRTIO_MMIO_CMDLINE_DEVICES") cmdline_devices = r.value == "y";
    if (r.name == "PVH") pvh = r.value == "y";
  }
  EXPECT_TRUE(modules_off);
  EXPECT_TRUE(cmdline_devices);
  EXPECT_TRUE(pvh);
  // The embedded copy is the file in the tree.
  auto file = read_file(fs::path(FCVM_SOURCE_DIR) / "guest/kernel/fcvm-guest.config");
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(*file, kGuestKernelConfigFragment);
}

TEST(KernelProgress, CountsCompileSteps) {
  EXPECT_TRUE(is_compile_step("  CC      fs/ext4/inode.o"));
  EXPECT_TRUE(is_compile_step("  AS      arch/x86/entry/entry_64.o"));
  EXPECT_FALSE(is_compile_step("  HOSTCC  scripts/basic/fixdep"));
  EXPECT_FALSE(is_compile_step("  AR      fs/built-in.a"));
  EXPECT_FALSE(is_compile_step("  LD      vmlinux.o"));
  EXPECT_FALSE(is_compile_step("CC fs/open.o"));
  EXPECT_EQ(progress_percent(0), 0u);
  EXPECT_EQ(progress_percent(698, 1396), 50u);
  EXPECT_EQ(progress_percent(1396, 1396), 99u);  // 100% only when make has exited
  EXPECT_EQ(progress_percent(5000, 1396), 99u);
  EXPECT_EQ(progress_percent(3, 0), 99u);
}

class KernelCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("fcvm-kernel-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  KernelBuildOptions options() const {
    KernelBuildOptions o;
    o.data_dir = dir_;
    o.source_package = "fcvm-test-no-such-package";
    o.source_tarball = dir_ / "missing.tar.xz";
    o.fragment = "CONFIG_A=y\n";
    o.progress_fd = -1;
    return o;
  }

  void make_entry(const std::string& name, const std::string& version, bool complete = true) {
    const fs::path d = dir_ / "kernels" / name;
    fs::create_directories(d);
    for (const char* f : {"vmlinux", "bzImage", "config"}) {
      if (!complete && std::string(f) == "bzImage") continue;
      std::ofstream(d / f) << f;
    }
    std::ofstream(d / "source-version") << version << "\n";
  }

  fs::path dir_;
};

TEST_F(KernelCacheTest, MissingSourcePackageNamesTheFix) {
  KernelBuilder builder(options(), nullptr);
  auto key = builder.cache_key();
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), Errc::unavailable);
  EXPECT_NE(key.status().message().find(std::string(kKernelBuildDepsFix)), std::string::npos)
      << key.status().message();
  auto built = builder.ensure();
  ASSERT_FALSE(built.ok());
  EXPECT_EQ(built.status().code(), Errc::unavailable);
  EXPECT_NE(built.status().message().find("apt-get install linux-source-6.1"), std::string::npos);
  EXPECT_FALSE(builder.cached().has_value());
}

TEST_F(KernelCacheTest, CachedFallsBackToAnEntryBuiltFromThisFragment) {
  KernelBuilder builder(options(), nullptr);
  make_entry(cache_key("9.9-1", "CONFIG_OTHER=y\n"), "9.9-1");  // another fragment
  make_entry(cache_key("9.9-2", "CONFIG_A=y\n"), "9.9-2", /*complete=*/false);
  make_entry("0123456789abcdef", "9.9-3");  // name does not match its contents
  EXPECT_FALSE(builder.cached().has_value());

  const std::string key = cache_key("9.9-4", "CONFIG_A=y\n");
  make_entry(key, "9.9-4");
  auto found = builder.cached();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->key, key);
  EXPECT_EQ(found->source_version, "9.9-4");
  EXPECT_EQ(found->dir, dir_ / "kernels" / key);
  EXPECT_EQ(found->vmlinux, dir_ / "kernels" / key / "vmlinux");
  EXPECT_EQ(found->bzimage, dir_ / "kernels" / key / "bzImage");
  EXPECT_EQ(found->config, dir_ / "kernels" / key / "config");
}

TEST_F(KernelCacheTest, CachedPrefersTheInstalledSourceVersion) {
  KernelBuildOptions o = options();
  o.source_version = "2.0-1";
  KernelBuilder builder(o, nullptr);
  make_entry(cache_key("1.0-1", "CONFIG_A=y\n"), "1.0-1");  // built before an upgrade
  auto found = builder.cached();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->source_version, "1.0-1");
  make_entry(cache_key("2.0-1", "CONFIG_A=y\n"), "2.0-1");
  // Make the old one look newer: the installed version still wins.
  fs::last_write_time(dir_ / "kernels" / cache_key("1.0-1", "CONFIG_A=y\n") / "vmlinux",
                      fs::file_time_type::clock::now() + std::chrono::hours(1));
  found = builder.cached();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->source_version, "2.0-1");
  EXPECT_EQ(found->key, cache_key("2.0-1", "CONFIG_A=y\n"));
}

TEST_F(KernelCacheTest, EmbeddedFragmentIsTheDefault) {
  KernelBuildOptions o = options();
  o.fragment.clear();
  KernelBuilder builder(o, nullptr);
  EXPECT_EQ(builder.fragment(), kGuestKernelConfigFragment);
}

// The whole pipeline against a fake source tree whose Makefile and merge_config.sh stand in
// for the kernel's: extraction, merge, the .config check, progress parsing, publishing.
class KernelBuildTest : public KernelCacheTest {
 protected:
  // Writes <dir_>/<name>.tar holding linux-fake/ (a stand-in kernel tree).
  fs::path make_tarball(const std::string& name, bool fail_compile) {
    const fs::path tree = dir_ / ("tree-" + name) / "linux-fake";
    fs::create_directories(tree / "scripts/kconfig");
    std::ofstream(tree / "Makefile")
        << "tinyconfig:\n"
           "\tprintf 'CONFIG_64BIT=y\\n# CONFIG_MODULES is not set\\n' > .config\n"
           "olddefconfig:\n"
           "\tgrep -v DROPPED .config > .config.new; mv .config.new .config\n"
           "vmlinux:\n"
           "\t@for i in 1 2 3; do echo \"  CC      f$$i.o\"; done\n"
           "\t@if [ -e FAIL ]; then echo 'f.c:1:1: error: boom' >&2; exit 2; fi\n"
           "\tcp .config vmlinux\n"
           "bzImage:\n"
           "\tmkdir -p arch/x86/boot && echo bz > arch/x86/boot/bzImage\n";
    std::ofstream(tree / "scripts/kconfig/merge_config.sh")
        << "#!/bin/sh\n[ \"$1\" = -m ] && shift\ncat \"$2\" >> \"$1\"\n";
    fs::permissions(tree / "scripts/kconfig/merge_config.sh", fs::perms::owner_all,
                    fs::perm_options::add);
    if (fail_compile) std::ofstream(tree / "FAIL") << "";
    const fs::path tarball = dir_ / (name + ".tar");
    auto tarred = run_command({"tar", "-cf", tarball.string(), "-C", tree.parent_path().string(),
                               "linux-fake"});
    EXPECT_TRUE(tarred.ok()) << tarred.status().message();
    return tarball;
  }

  KernelBuildOptions build_options(const fs::path& tarball, std::string fragment) const {
    KernelBuildOptions o = options();
    o.source_tarball = tarball;
    o.source_version = "1.2-3";
    o.fragment = std::move(fragment);
    o.jobs = 2;
    return o;
  }

  std::size_t trash_count() const {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir_ / "kernels")) {
      n += e.path().filename().string().starts_with(".trash-");
    }
    return n;
  }

  std::vector<std::string> leftovers() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_ / "kernels")) {
      const std::string n = e.path().filename().string();
      if (n.starts_with(".build-")) names.push_back(n);
    }
    return names;
  }
};

// A host without the build tools cannot run these; they are checked before anything else.
#define SKIP_IF_UNAVAILABLE(result)                                                  \
  if (!(result).ok() && (result).status().code() == Errc::unavailable)               \
  GTEST_SKIP() << (result).status().message()

TEST_F(KernelBuildTest, BuildsPublishesAndReuses) {
  const std::string fragment = "CONFIG_64BIT=y\n# CONFIG_MODULES is not set\nCONFIG_FOO=y\n";
  // A crashed build's directory: nobody holds its lock, so it goes.
  fs::create_directories(dir_ / "kernels/.build-0000000000000000-1-abcdef/src");

  KernelBuilder builder(build_options(make_tarball("ok", false), fragment), nullptr);
  EXPECT_FALSE(builder.cached().has_value());
  auto built = builder.ensure();
  SKIP_IF_UNAVAILABLE(built);
  ASSERT_TRUE(built.ok()) << built.status().message();

  const std::string key = cache_key("1.2-3", fragment);
  EXPECT_EQ(built->key, key);
  EXPECT_EQ(built->dir, dir_ / "kernels" / key);
  auto config = read_file(built->config);
  ASSERT_TRUE(config.ok());
  EXPECT_NE(config->find("CONFIG_FOO=y"), std::string::npos);
  EXPECT_EQ(*read_file(built->vmlinux), *config);
  EXPECT_EQ(*read_file(built->bzimage), "bz\n");
  EXPECT_EQ(*read_file(built->dir / "source-version"), "1.2-3\n");
  auto log = read_file(built->dir / "build.log");
  ASSERT_TRUE(log.ok());
  EXPECT_NE(log->find("  CC      f3.o"), std::string::npos);
  EXPECT_TRUE(leftovers().empty());
  // The build tree went to a .trash-* directory that a background rm deletes.
  for (int i = 0; i < 100 && trash_count() > 0; ++i) ::usleep(50'000);
  EXPECT_EQ(trash_count(), 0u);

  // The second call is a lookup: same answer, and it does not touch the tarball.
  fs::remove(dir_ / "ok.tar");
  auto again = builder.ensure();
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->vmlinux, built->vmlinux);
  auto cached = builder.cached();
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(cached->dir, built->dir);
}

TEST_F(KernelBuildTest, DroppedOptionIsAnErrorNamingIt) {
  KernelBuilder builder(
      build_options(make_tarball("drop", false), "CONFIG_64BIT=y\nCONFIG_DROPPED=y\n"), nullptr);
  auto built = builder.ensure();
  SKIP_IF_UNAVAILABLE(built);
  ASSERT_FALSE(built.ok());
  EXPECT_EQ(built.status().code(), Errc::internal);
  EXPECT_NE(built.status().message().find("CONFIG_DROPPED=y (is not set)"), std::string::npos)
      << built.status().message();
  EXPECT_FALSE(builder.cached().has_value());
  EXPECT_TRUE(leftovers().empty());
  EXPECT_TRUE(fs::exists(dir_ / "kernels/last-failed-build.log"));
}

TEST_F(KernelBuildTest, FailedCompileNamesTheErrorAndTheLog) {
  KernelBuilder builder(build_options(make_tarball("fail", true), "CONFIG_64BIT=y\n"), nullptr);
  auto built = builder.ensure();
  SKIP_IF_UNAVAILABLE(built);
  ASSERT_FALSE(built.ok());
  const std::string msg = built.status().message();
  EXPECT_NE(msg.find("make vmlinux bzImage failed (exit code 2)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("error: boom"), std::string::npos) << msg;
  EXPECT_NE(msg.find((dir_ / "kernels/last-failed-build.log").string()), std::string::npos) << msg;
  EXPECT_FALSE(builder.cached().has_value());
  EXPECT_TRUE(leftovers().empty());
}

}  // namespace
}  // namespace fcvm
