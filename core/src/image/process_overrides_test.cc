#include "image/process_overrides.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

const char* no_env(const char*) { return nullptr; }
const char* host_env(const char* key) { return std::string(key) == "FROM_HOST" ? "host-value" : nullptr; }

class ProcessOverridesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create("fcvm-overrides-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    tmp_dir_ = std::move(*made);
    root_ = tmp_dir_.path();
    std::filesystem::create_directories(root_ / "etc");
    std::ofstream(root_ / "etc/passwd") << "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/sh\n";
    std::ofstream(root_ / "etc/group") << "root:x:0:\nstaff:x:50:\nweb:x:60:other,www\n";
    image_.cmd = {"/hello.sh"};
    image_.entrypoint = {"/bin/sh"};
    image_.env = {"PATH=/bin", "A=image"};
    image_.working_dir = "/srv";
  }

  TempDir tmp_dir_;
  std::filesystem::path root_;
  ImageConfig image_;
};

TEST_F(ProcessOverridesTest, ImageDefaults) {
  auto p = resolve_process(image_, {}, root_, no_env);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->args, (std::vector<std::string>{"/bin/sh", "/hello.sh"}));
  EXPECT_EQ(p->cwd, "/srv");
  EXPECT_EQ(p->uid, 0u);
  EXPECT_EQ(p->env, (std::vector<std::string>{"PATH=/bin", "TERM=xterm", "A=image", "HOME=/root"}));
}

TEST_F(ProcessOverridesTest, ArgsReplaceCmdAndEntrypointDropsCmd) {
  ProcessOverrides o;
  o.args = {"-c", "true"};
  EXPECT_EQ(resolve_process(image_, o, root_, no_env)->args, (std::vector<std::string>{"/bin/sh", "-c", "true"}));
  o = {};
  o.entrypoint = "/bin/echo";
  EXPECT_EQ(resolve_process(image_, o, root_, no_env)->args, (std::vector<std::string>{"/bin/echo"}));
  o.entrypoint = R"(["/bin/echo","-n"])";
  o.args = {"x"};
  EXPECT_EQ(resolve_process(image_, o, root_, no_env)->args, (std::vector<std::string>{"/bin/echo", "-n", "x"}));
  o = {};
  o.entrypoint = "";
  auto empty = resolve_process(ImageConfig{}, o, root_, no_env);
  EXPECT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), Errc::invalid_argument);
}

TEST_F(ProcessOverridesTest, EnvOrderFileThenFlagsAndHostLookup) {
  const auto file = root_ / "env";
  std::ofstream(file) << "# comment\n\nA=file\nB=file\nFROM_HOST\nUNSET_ON_HOST\n";
  ProcessOverrides o;
  o.env_files = {file};
  o.env = {"B=flag", "FROM_HOST", "C=x=y"};
  auto p = resolve_process(image_, o, root_, host_env);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->env, (std::vector<std::string>{"PATH=/bin", "TERM=xterm", "A=file", "B=flag", "FROM_HOST=host-value",
                                              "C=x=y", "HOME=/root"}));
  o.env = {"=bad"};
  EXPECT_FALSE(resolve_process(image_, o, root_, host_env).ok());
  o = {};
  o.env_files = {root_ / "missing"};
  auto missing = resolve_process(image_, o, root_, host_env);
  EXPECT_NE(missing.status().message().find("--env-file"), std::string::npos);
}

TEST_F(ProcessOverridesTest, UsersByIdAndName) {
  ProcessOverrides o;
  o.user = "1000";
  auto p = resolve_process(image_, o, root_, no_env);
  EXPECT_EQ(p->uid, 1000u);
  EXPECT_EQ(p->gid, 1000u);
  o.user = "www";
  p = resolve_process(image_, o, root_, no_env);
  EXPECT_EQ(p->uid, 33u);
  EXPECT_EQ(p->gid, 34u);
  EXPECT_NE(std::find(p->env.begin(), p->env.end(), "HOME=/var/www"), p->env.end());
  o.user = "www:staff";
  EXPECT_EQ(resolve_process(image_, o, root_, no_env)->gid, 50u);
  for (const char* bad : {"nobody", "www:nogroup", ":5", ""}) {
    o.user = bad;
    auto r = resolve_process(image_, o, root_, no_env);
    EXPECT_FALSE(r.ok()) << bad;
  }
}

// As runc: with a user, the primary group, and the user's groups unless -u names a group.
TEST_F(ProcessOverridesTest, AdditionalGroupsFollowRunc) {
  ProcessOverrides o;
  EXPECT_TRUE(resolve_process(image_, o, root_, no_env)->additional_gids.empty());
  o.user = "root";
  EXPECT_EQ(resolve_process(image_, o, root_, no_env)->additional_gids, (std::vector<std::uint32_t>{0}));
  o.user = "www";
  EXPECT_EQ(resolve_process(image_, o, root_, no_env)->additional_gids, (std::vector<std::uint32_t>{34, 60}));
  o.user = "33";
  EXPECT_EQ(resolve_process(image_, o, root_, no_env)->additional_gids, (std::vector<std::uint32_t>{34, 60}));
  o.user = "www:staff";
  EXPECT_EQ(resolve_process(image_, o, root_, no_env)->additional_gids, (std::vector<std::uint32_t>{50}));
  o.user = "4321";
  EXPECT_EQ(resolve_process(image_, o, root_, no_env)->additional_gids, (std::vector<std::uint32_t>{4321}));
}

TEST_F(ProcessOverridesTest, TermDefaultsToXtermAndYieldsToTheImage) {
  auto p = resolve_process(image_, {}, root_, no_env);
  EXPECT_NE(std::find(p->env.begin(), p->env.end(), "TERM=xterm"), p->env.end());
  image_.env.push_back("TERM=dumb");
  p = resolve_process(image_, {}, root_, no_env);
  EXPECT_EQ(std::count_if(p->env.begin(), p->env.end(), [](auto& e) { return e.rfind("TERM=", 0) == 0; }), 1);
  EXPECT_NE(std::find(p->env.begin(), p->env.end(), "TERM=dumb"), p->env.end());
}

TEST_F(ProcessOverridesTest, WorkdirMustBeAbsolute) {
  ProcessOverrides o;
  o.workdir = "relative";
  EXPECT_FALSE(resolve_process(image_, o, root_, no_env).ok());
}

}  // namespace
}  // namespace fcvm
