#include "config/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <map>
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create("fcvm-config-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    tmp_dir_ = std::move(*made);
    dir_ = tmp_dir_.path();
  }

  fs::path write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p;
  }

  // Inputs with a fake environment and a default file that does not exist.
  ConfigInputs inputs() {
    ConfigInputs in;
    in.env = [this](std::string_view name) -> std::optional<std::string> {
      auto it = env_.find(std::string(name));
      return it == env_.end() ? std::nullopt : std::optional(it->second);
    };
    in.default_config_file = dir_ / "no-such-default.json";
    return in;
  }

  std::string load_error(const ConfigInputs& in) {
    auto cfg = Config::load(in);
    EXPECT_FALSE(cfg.ok());
    return cfg.ok() ? std::string() : cfg.status().message();
  }

  TempDir tmp_dir_;
  fs::path dir_;
  std::map<std::string, std::string> env_;
};

TEST_F(ConfigTest, DefaultsWhenNothingIsGiven) {
  auto cfg = Config::load(inputs());
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_EQ(cfg->data_dir, "/var/lib/fcvm");
  EXPECT_EQ(cfg->log_level, LogLevel::warning);
  EXPECT_TRUE(cfg->plugins.empty());
  EXPECT_TRUE(cfg->plugin_dirs.empty());
  EXPECT_TRUE(cfg->source.empty());
  EXPECT_EQ(cfg->plugin_config, nlohmann::json::object());
}

TEST_F(ConfigTest, DefaultFileIsReadWhenItExists) {
  auto in = inputs();
  in.default_config_file = write("default.json", R"({"log_level": "debug"})");
  auto cfg = Config::load(in);
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_EQ(cfg->log_level, LogLevel::debug);
  EXPECT_EQ(cfg->source, in.default_config_file);
}

TEST_F(ConfigTest, ReadsEveryKey) {
  auto in = inputs();
  in.config_file = write("c.json", R"({
    "data_dir": "/srv/fcvm/",
    "plugin_dirs": ["/opt/p1", "rel/p2"],
    "plugins": {"vmm": "vmm-qemu", "network": "network-slirp", "storage": "storage-btrfs",
                "memory": "memory-uffd"},
    "plugin_config": {"vmm-qemu": {"accel": "tcg"}},
    "log_level": "info"
  })");
  auto cfg = Config::load(in);
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_EQ(cfg->data_dir, "/srv/fcvm");
  ASSERT_EQ(cfg->plugin_dirs.size(), 2u);
  EXPECT_EQ(cfg->plugin_dirs[0], "/opt/p1");
  EXPECT_EQ(cfg->plugin_dirs[1], dir_ / "rel/p2");  // relative to the file's directory
  EXPECT_EQ(cfg->plugins.at(PluginKind::vmm), "vmm-qemu");
  EXPECT_EQ(cfg->plugins.at(PluginKind::network), "network-slirp");
  EXPECT_EQ(cfg->plugins.at(PluginKind::storage), "storage-btrfs");
  EXPECT_EQ(cfg->plugins.at(PluginKind::memory), "memory-uffd");
  EXPECT_EQ(cfg->config_for("vmm-qemu"), nlohmann::json({{"accel", "tcg"}}));
  EXPECT_EQ(cfg->config_for("network-slirp"), nlohmann::json::object());
  EXPECT_EQ(cfg->log_level, LogLevel::info);
  EXPECT_EQ(cfg->source, dir_ / "c.json");
}

TEST_F(ConfigTest, PrecedenceIsFileThenEnvironmentThenFlags) {
  const auto file = write("c.json", R"({"data_dir": "/from/file", "log_level": "error",
                                        "plugins": {"vmm": "vmm-file", "storage": "st-file"}})");
  auto in = inputs();
  in.config_file = file;

  auto only_file = Config::load(in);
  ASSERT_TRUE(only_file.ok()) << only_file.status().message();
  EXPECT_EQ(only_file->data_dir, "/from/file");
  EXPECT_EQ(only_file->log_level, LogLevel::error);

  env_["FCVM_DATA_DIR"] = "/from/env";
  env_["FCVM_LOG"] = "info";
  auto with_env = Config::load(in);
  ASSERT_TRUE(with_env.ok()) << with_env.status().message();
  EXPECT_EQ(with_env->data_dir, "/from/env");
  EXPECT_EQ(with_env->log_level, LogLevel::info);

  in.data_dir = "/from/flag";
  in.log_level = "trace";
  in.plugin_choices = {"vmm=vmm-flag", "vmm=vmm-last-wins"};
  in.plugin_dirs = {"/flag/plugins"};
  auto with_flags = Config::load(in);
  ASSERT_TRUE(with_flags.ok()) << with_flags.status().message();
  EXPECT_EQ(with_flags->data_dir, "/from/flag");
  EXPECT_EQ(with_flags->log_level, LogLevel::trace);
  EXPECT_EQ(with_flags->plugins.at(PluginKind::vmm), "vmm-last-wins");
  EXPECT_EQ(with_flags->plugins.at(PluginKind::storage), "st-file");  // untouched by flags
  EXPECT_EQ(with_flags->plugin_dirs, std::vector<fs::path>{"/flag/plugins"});
}

TEST_F(ConfigTest, ConfigFileFromEnvironment) {
  env_["FCVM_CONFIG"] = write("env.json", R"({"log_level": "debug"})").string();
  auto cfg = Config::load(inputs());
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_EQ(cfg->log_level, LogLevel::debug);

  // --config beats $FCVM_CONFIG.
  auto in = inputs();
  in.config_file = write("flag.json", R"({"log_level": "error"})");
  auto flagged = Config::load(in);
  ASSERT_TRUE(flagged.ok()) << flagged.status().message();
  EXPECT_EQ(flagged->log_level, LogLevel::error);
}

TEST_F(ConfigTest, DataDirIsMadeAbsolute) {
  auto in = inputs();
  in.data_dir = "relative/dir/";
  auto cfg = Config::load(in);
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_TRUE(cfg->data_dir.is_absolute());
  EXPECT_EQ(cfg->data_dir, (fs::current_path() / "relative/dir").lexically_normal());
}

TEST_F(ConfigTest, MissingExplicitFileIsAnError) {
  auto in = inputs();
  in.config_file = dir_ / "missing.json";
  auto cfg = Config::load(in);
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), Errc::not_found);
  EXPECT_EQ(cfg.status().message(), "config file " + (dir_ / "missing.json").string() +
                                        " does not exist; create it or drop --config");

  env_["FCVM_CONFIG"] = (dir_ / "env-missing.json").string();
  EXPECT_NE(load_error(inputs()).find("unset FCVM_CONFIG"), std::string::npos);
}

TEST_F(ConfigTest, UnknownKeyNamesTheFileAndTheKey) {
  auto in = inputs();
  in.config_file = write("c.json", R"({"data_dir": "/x", "datadir": "/y"})");
  EXPECT_EQ(load_error(in), "config " + in.config_file->string() +
                                ": unknown key 'datadir'; known keys are data_dir, plugin_dirs, "
                                "plugins, plugin_config, log_level, log_max_bytes");
}

TEST_F(ConfigTest, LogMaxBytesIsABytesCount) {
  auto in = inputs();
  in.config_file = write("c.json", R"({"log_max_bytes": 4096})");
  auto cfg = Config::load(in);
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_EQ(cfg->log_max_bytes, 4096u);
  EXPECT_EQ(Config{}.log_max_bytes, 16u << 20);
  in.config_file = write("d.json", R"({"log_max_bytes": "1m"})");
  EXPECT_NE(load_error(in).find("log_max_bytes: expected a number of bytes (0: no cap)"),
            std::string::npos)
      << load_error(in);
}

TEST_F(ConfigTest, WrongTypesNameTheKeyPath) {
  struct Case {
    const char* json;
    const char* message;  // after "config <path>: "
  };
  const Case cases[] = {
      {R"({"plugins": {"vmm": 3}})", "plugins.vmm: expected a string, got number"},
      {R"({"plugins": ["vmm-qemu"]})", "plugins: expected an object, got array"},
      {R"({"plugins": {"gpu": "x"}})",
       "plugins.gpu: unknown plugin kind; use one of vmm, network, storage, memory"},
      {R"({"data_dir": false})", "data_dir: expected a string, got boolean"},
      {R"({"data_dir": ""})", "data_dir: must not be empty"},
      {R"({"plugin_dirs": "/opt"})", "plugin_dirs: expected an array of strings, got string"},
      {R"({"plugin_dirs": ["/a", 7]})", "plugin_dirs[1]: expected a string, got number"},
      {R"({"plugin_config": {"vmm-qemu": "tcg"}})",
       "plugin_config.vmm-qemu: expected an object, got string"},
      {R"({"log_level": "loud"})",
       "log_level: unknown log level 'loud'; use one of trace, debug, info, warning, error"},
      {R"([1, 2])", "expected a JSON object at the top level, got array"},
  };
  for (const auto& c : cases) {
    auto in = inputs();
    in.config_file = write("c.json", c.json);
    EXPECT_EQ(load_error(in), "config " + in.config_file->string() + ": " + c.message) << c.json;
  }
}

TEST_F(ConfigTest, InvalidJsonSaysWhere) {
  auto in = inputs();
  in.config_file = write("c.json", "{\"data_dir\": \"/x\",\n  oops}");
  const std::string msg = load_error(in);
  EXPECT_EQ(msg.rfind("config " + in.config_file->string() + ": not valid JSON: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("[json.exception"), std::string::npos) << msg;
}

TEST_F(ConfigTest, BadPluginFlagsNameTheFix) {
  const std::pair<const char*, const char*> cases[] = {
      {"vmm-qemu", "--plugin 'vmm-qemu': expected KIND=NAME with KIND one of vmm, network, "
                   "storage, memory, e.g. --plugin vmm=vmm-qemu"},
      {"gpu=nvidia", "--plugin 'gpu=nvidia': unknown kind 'gpu'; use one of vmm, network, "
                     "storage, memory, e.g. --plugin vmm=vmm-qemu"},
      {"vmm=", "--plugin 'vmm=': the plugin name is empty; e.g. --plugin vmm=NAME (see 'fcvm "
               "plugins' for names)"},
  };
  for (const auto& [flag, message] : cases) {
    auto in = inputs();
    in.plugin_choices = {flag};
    EXPECT_EQ(load_error(in), message);
  }
}

TEST_F(ConfigTest, BadLogLevelsFromEnvironmentAndFlag) {
  env_["FCVM_LOG"] = "chatty";
  EXPECT_EQ(load_error(inputs()),
            "FCVM_LOG='chatty': unknown log level; use one of trace, debug, info, warning, error");
  env_.clear();
  auto in = inputs();
  in.log_level = "verbose";
  EXPECT_NE(load_error(in).find("--log-level 'verbose'"), std::string::npos);
  in.log_level = "warn";  // accepted alias
  auto cfg = Config::load(in);
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->log_level, LogLevel::warning);
}

TEST_F(ConfigTest, ToJsonReadsBackAsTheSameConfig) {
  auto in = inputs();
  in.config_file = write("c.json", R"({"plugin_config": {"vmm-qemu": {"accel": "tcg"}},
                                       "plugin_dirs": ["/opt/p"]})");
  in.plugin_choices = {"network=network-slirp", "vmm=vmm-qemu"};
  in.data_dir = "/data";
  in.log_level = "info";
  auto cfg = Config::load(in);
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  const auto j = cfg->to_json();
  EXPECT_EQ(j["plugins"], nlohmann::json({{"vmm", "vmm-qemu"}, {"network", "network-slirp"}}));
  EXPECT_EQ(j["log_level"], "info");

  auto again = Config::merge_file(Config{}, j, "config show", "/");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->to_json(), j);
}

}  // namespace
}  // namespace fcvm
