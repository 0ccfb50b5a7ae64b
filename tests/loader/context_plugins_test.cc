// CommandContext's plugin services (core/src/cli/context_plugins.cc) over the fixture
// plugins: search order, choices, defaults and the context handed to a factory.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "cli/command.h"
#include "fcvm/memory.h"
#include "fcvm/network.h"
#include "plugin/plugin_registry.h"
#include "fcvm/temp_dir.h"

namespace fcvm::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path fixture_dir(const std::string& id) { return fs::path(FCVM_LOADER_FIXTURES) / id; }

class ContextPluginsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create("fcvm-context-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    tmp_dir_ = std::move(*made);
    dir_ = tmp_dir_.path();
    ::unsetenv("FCVM_PLUGIN_PATH");
    std::ofstream(dir_ / "config.json")
        << R"({"plugin_config": {"fixture-good": {"greeting": "from config"}}})";
  }
  void TearDown() override {
    ::unsetenv("FCVM_PLUGIN_PATH");
  }

  GlobalOptions globals(std::vector<fs::path> plugin_dirs, std::vector<std::string> choices = {}) {
    GlobalOptions g;
    g.config_file = dir_ / "config.json";
    g.data_dir = dir_ / "data";
    g.plugin_dirs = std::move(plugin_dirs);
    g.plugin_choices = std::move(choices);
    return g;
  }

  TempDir tmp_dir_;
  fs::path dir_;
};

TEST_F(ContextPluginsTest, ChosenPluginGetsItsConfigLoggerAndDataDir) {
  CommandContext ctx(globals({fixture_dir("good")}, {"network=fixture-good"}));
  auto network = ctx.backend_as<NetworkBackend>(PluginKind::network);
  ASSERT_NE(network, nullptr);
  EXPECT_EQ(network->probe().reason, "fixture-good probe ran, greeting=from config");
  EXPECT_EQ(ctx.chosen_plugin(PluginKind::network), "fixture-good");
  EXPECT_EQ(ctx.backend(PluginKind::network), network) << "created once, then cached";

  const PluginContext pc = ctx.plugin_context("fixture-good");
  EXPECT_EQ(pc.config, nlohmann::json({{"greeting", "from config"}}));
  EXPECT_EQ(pc.data_dir, dir_ / "data");
  EXPECT_NE(pc.log, nullptr);
  EXPECT_EQ(ctx.plugin_context("other").config, nlohmann::json::object());
}

TEST_F(ContextPluginsTest, DefaultsNoNetworkAndFileMemory) {
  CommandContext ctx(globals({}));
  EXPECT_EQ(ctx.backend(PluginKind::network), nullptr);
  EXPECT_EQ(ctx.chosen_plugin(PluginKind::network), "");
  auto memory = ctx.backend_as<MemoryBackend>(PluginKind::memory);
  ASSERT_NE(memory, nullptr);
  EXPECT_EQ(PluginRegistry::plugin_name_of(memory), "file");
  EXPECT_EQ(ctx.chosen_plugin(PluginKind::memory), "file");
  EXPECT_EQ(ctx.chosen_plugin(PluginKind::storage), "storage-squashfs");
}

// The fixtures named vmm-firecracker and vmm-qemu come first in the search path, so they
// shadow any real VMM plugin beside the test binary.
TEST_F(ContextPluginsTest, DefaultVmmIsTheFirstAvailable) {
  CommandContext ctx(globals({fixture_dir("vmm-erroring"), fixture_dir("vmm-available")}));
  ASSERT_NE(ctx.backend(PluginKind::vmm), nullptr);
  EXPECT_EQ(ctx.chosen_plugin(PluginKind::vmm), "vmm-qemu");
  EXPECT_EQ(ctx.backend(PluginKind::vmm)->probe().reason, "vmm-qemu fixture is available");
}

TEST_F(ContextPluginsTest, NoUsableVmmListsEachReason) {
  CommandContext ctx(globals({fixture_dir("vmm-erroring"), fixture_dir("vmm-unavailable")}));
  try {
    ctx.backend(PluginKind::vmm);
    FAIL() << "expected CliError";
  } catch (const CliError& e) {
    EXPECT_STREQ(e.what(),
                 "no usable VMM (vmm-firecracker: plugin 'vmm-firecracker': "
                 "plugin_config.fixture-erroring.mode: expected \"fast\"; vmm-qemu: vmm-qemu "
                 "fixture: no hypervisor here); fix one of them, or choose one with --vmm NAME "
                 "(see 'fcvm plugins')");
  }
}

TEST_F(ContextPluginsTest, WrongKindForAChosenNameIsAnError) {
  CommandContext ctx(globals({fixture_dir("good")}, {"vmm=fixture-good"}));
  try {
    ctx.backend(PluginKind::vmm);
    FAIL() << "expected CliError";
  } catch (const CliError& e) {
    EXPECT_STREQ(e.what(), "plugin 'fixture-good' is a network plugin, not vmm");
  }
}

TEST_F(ContextPluginsTest, UnknownChosenNameIsAnError) {
  CommandContext ctx(globals({}, {"network=network-nope"}));
  try {
    ctx.backend(PluginKind::network);
    FAIL() << "expected CliError";
  } catch (const CliError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no plugin named 'network-nope'"));
  }
}

TEST_F(ContextPluginsTest, PluginDirFlagsComeBeforeThePluginPath) {
  ::setenv("FCVM_PLUGIN_PATH", (":" + fixture_dir("duplicate").string() + ":").c_str(), 1);
  CommandContext ctx(globals({fixture_dir("good")}));
  const PluginInfo* good = ctx.plugins().find("fixture-good");
  ASSERT_NE(good, nullptr);
  EXPECT_EQ(good->file, fs::canonical(fixture_dir("good") / "good.so"));
  ASSERT_EQ(ctx.plugins().refusals().size(), 1u);
  EXPECT_EQ(ctx.plugins().refusals().front().file,
            fs::canonical(fixture_dir("duplicate") / "duplicate.so"));
}

TEST_F(ContextPluginsTest, ThePluginPathIsSearched) {
  ::setenv("FCVM_PLUGIN_PATH", (fixture_dir("duplicate").string() + ":/nonexistent").c_str(), 1);
  CommandContext ctx(globals({}));
  const PluginInfo* found = ctx.plugins().find("fixture-good");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->file, fs::canonical(fixture_dir("duplicate") / "duplicate.so"));
  ASSERT_NE(ctx.plugins().find("file"), nullptr) << "the built-in is registered too";
}

}  // namespace
}  // namespace fcvm::cli
