// The engine's plugin services (core/src/engine/engine_plugins.cc) over the fixture
// plugins: search order, choices, defaults and the context handed to a factory.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "config/config.h"
#include "engine/engine.h"
#include "fcvm/memory.h"
#include "fcvm/network.h"
#include "plugin/plugin_registry.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path fixture_dir(const std::string& id) { return fs::path(FCVM_LOADER_FIXTURES) / id; }

class EnginePluginsTest : public ::testing::Test {
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

  std::unique_ptr<Engine> open(std::vector<fs::path> plugin_dirs, std::vector<std::string> choices = {}) {
    ConfigInputs in;
    in.config_file = dir_ / "config.json";
    in.data_dir = dir_ / "data";
    in.plugin_dirs = std::move(plugin_dirs);
    in.plugin_choices = std::move(choices);
    in.env = [](std::string_view) { return std::optional<std::string>(); };
    auto engine = Engine::open(in);
    EXPECT_TRUE(engine.ok()) << engine.status().message();
    return engine.ok() ? std::move(engine).value() : nullptr;
  }
  template <class T>
  static std::shared_ptr<T> backend_as(Engine& e, PluginKind kind) {
    auto made = e.backend(kind);
    EXPECT_TRUE(made.ok()) << made.status().message();
    return made.ok() ? std::static_pointer_cast<T>(*made) : nullptr;
  }
  static std::shared_ptr<Backend> backend(Engine& e, PluginKind kind) { return backend_as<Backend>(e, kind); }
  static std::string chosen(Engine& e, PluginKind kind) {
    auto name = e.chosen_plugin(kind);
    EXPECT_TRUE(name.ok()) << name.status().message();
    return name.ok() ? *name : "";
  }
  static std::string failure(Engine& e, PluginKind kind) {
    auto made = e.backend(kind);
    EXPECT_FALSE(made.ok());
    return made.ok() ? "" : made.status().message();
  }

  TempDir tmp_dir_;
  fs::path dir_;
};

TEST_F(EnginePluginsTest, ChosenPluginGetsItsConfigLoggerAndDataDir) {
  auto engine = open({fixture_dir("good")}, {"network=fixture-good"});
  ASSERT_NE(engine, nullptr);
  Engine& ctx = *engine;
  auto network = backend_as<NetworkBackend>(ctx, PluginKind::network);
  ASSERT_NE(network, nullptr);
  EXPECT_EQ(network->probe().reason, "fixture-good probe ran, greeting=from config");
  EXPECT_EQ(chosen(ctx, PluginKind::network), "fixture-good");
  EXPECT_EQ(backend(ctx, PluginKind::network), network) << "created once, then cached";

  const PluginContext pc = ctx.plugin_context("fixture-good");
  EXPECT_EQ(pc.config, nlohmann::json({{"greeting", "from config"}}));
  EXPECT_EQ(pc.data_dir, dir_ / "data");
  EXPECT_NE(pc.log, nullptr);
  EXPECT_EQ(ctx.plugin_context("other").config, nlohmann::json::object());
}

TEST_F(EnginePluginsTest, DefaultsNoNetworkAndFileMemory) {
  auto engine = open({});
  ASSERT_NE(engine, nullptr);
  Engine& ctx = *engine;
  EXPECT_EQ(backend(ctx, PluginKind::network), nullptr);
  EXPECT_EQ(chosen(ctx, PluginKind::network), "");
  auto memory = backend_as<MemoryBackend>(ctx, PluginKind::memory);
  ASSERT_NE(memory, nullptr);
  EXPECT_EQ(PluginRegistry::plugin_name_of(memory), "file");
  EXPECT_EQ(chosen(ctx, PluginKind::memory), "file");
  EXPECT_EQ(chosen(ctx, PluginKind::storage), "storage-squashfs");
}

// The fixtures named vmm-firecracker and vmm-qemu come first in the search path, so they
// shadow any real VMM plugin beside the test binary.
TEST_F(EnginePluginsTest, DefaultVmmIsTheFirstAvailable) {
  auto engine = open({fixture_dir("vmm-erroring"), fixture_dir("vmm-available")});
  ASSERT_NE(engine, nullptr);
  Engine& ctx = *engine;
  ASSERT_NE(backend(ctx, PluginKind::vmm), nullptr);
  EXPECT_EQ(chosen(ctx, PluginKind::vmm), "vmm-qemu");
  EXPECT_EQ(backend(ctx, PluginKind::vmm)->probe().reason, "vmm-qemu fixture is available");
}

TEST_F(EnginePluginsTest, NoUsableVmmListsEachReason) {
  auto engine = open({fixture_dir("vmm-erroring"), fixture_dir("vmm-unavailable")});
  ASSERT_NE(engine, nullptr);
  Engine& ctx = *engine;
  {
    EXPECT_EQ(failure(ctx, PluginKind::vmm),
                 "no usable VMM (vmm-firecracker: plugin 'vmm-firecracker': "
                 "plugin_config.fixture-erroring.mode: expected \"fast\"; vmm-qemu: vmm-qemu "
                 "fixture: no hypervisor here); fix one of them, or choose one with --vmm NAME "
                 "(see 'fcvm plugins')");
  }
}

TEST_F(EnginePluginsTest, WrongKindForAChosenNameIsAnError) {
  auto engine = open({fixture_dir("good")}, {"vmm=fixture-good"});
  ASSERT_NE(engine, nullptr);
  Engine& ctx = *engine;
  EXPECT_EQ(failure(ctx, PluginKind::vmm), "plugin 'fixture-good' is a network plugin, not vmm");
}

TEST_F(EnginePluginsTest, UnknownChosenNameIsAnError) {
  auto engine = open({}, {"network=network-nope"});
  ASSERT_NE(engine, nullptr);
  Engine& ctx = *engine;
  EXPECT_THAT(failure(ctx, PluginKind::network), HasSubstr("no plugin named 'network-nope'"));
}

TEST_F(EnginePluginsTest, PluginDirFlagsComeBeforeThePluginPath) {
  ::setenv("FCVM_PLUGIN_PATH", (":" + fixture_dir("duplicate").string() + ":").c_str(), 1);
  auto engine = open({fixture_dir("good")});
  ASSERT_NE(engine, nullptr);
  Engine& ctx = *engine;
  const PluginInfo* good = ctx.plugin_registry().find("fixture-good");
  ASSERT_NE(good, nullptr);
  EXPECT_EQ(good->file, fs::canonical(fixture_dir("good") / "good.so"));
  ASSERT_EQ(ctx.plugin_registry().refusals().size(), 1u);
  EXPECT_EQ(ctx.plugin_registry().refusals().front().file,
            fs::canonical(fixture_dir("duplicate") / "duplicate.so"));
}

TEST_F(EnginePluginsTest, ThePluginPathIsSearched) {
  ::setenv("FCVM_PLUGIN_PATH", (fixture_dir("duplicate").string() + ":/nonexistent").c_str(), 1);
  auto engine = open({});
  ASSERT_NE(engine, nullptr);
  Engine& ctx = *engine;
  const PluginInfo* found = ctx.plugin_registry().find("fixture-good");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->file, fs::canonical(fixture_dir("duplicate") / "duplicate.so"));
  ASSERT_NE(ctx.plugin_registry().find("file"), nullptr) << "the built-in is registered too";
}

}  // namespace
}  // namespace fcvm
