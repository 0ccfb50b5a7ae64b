// Health checks with real microVMs: `podman run -d` with --health-url (the example image's
// httpd, published with -p through network-bridged) returns once the VM is healthy; with a
// --health-cmd that fails it returns the reason and a non-zero exit while the VM runs on
// unhealthy; `ls`, `ls --json` and `inspect` show the state; `healthcheck run` checks now.
#include <gtest/gtest.h>

#include <fstream>

#include "fcvm_cli.h"
#include "net_test_support.h"

namespace fcvm::test {
namespace {

class HealthCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
    cli_ = std::make_unique<FcvmCli>();
  }
  void TearDown() override {
    if (!cli_) return;
    for (const auto& r : cli_->ls()) {
      if (r.value("alive", false)) cli_->run({"stop", r["name"].get<std::string>()});
    }
    EXPECT_EQ(cli_->run({"gc"}).code, 0);
    EXPECT_TRUE(cli_->ls().empty());
  }
  // The host's ip_forward stays as it is (as in the network suite): the host alone probes.
  CliResult podman_run(std::vector<std::string> args) const {
    const auto config = cli_->data_dir() / "config.json";
    if (!std::filesystem::exists(config)) {
      std::ofstream(config) << R"({"plugin_config": {"network-bridged": {"ip_forward": false}}})";
    }
    args.insert(args.begin(), {"--config", config.string(), "podman", "run", "--kernel", FcvmCli::kernel().string()});
    return cli_->run(args);
  }
  // The STATUS column of `fcvm ls` for `name`.
  std::string ls_status(const std::string& name) const {
    auto ls = cli_->run({"ls"});
    for (size_t start = 0, end; start < ls.out.size(); start = end + 1) {
      end = ls.out.find('\n', start);
      const std::string line = ls.out.substr(start, end - start);
      if (line.rfind(name + " ", 0) == 0) {
        for (const char* s : {"running (healthy)", "running (unhealthy)", "running (starting)", "running"}) {
          if (line.find(s) != std::string::npos) return s;
        }
        return line;
      }
    }
    return "";
  }

  std::unique_ptr<FcvmCli> cli_;
};

TEST_F(HealthCheckTest, HttpdWithHealthUrlIsHealthyWhenDetachedRunReturns) {
  const std::string port = std::to_string(fcvm::testing::free_tcp_port());
  auto r = podman_run({"-d", "--name", "web", "--network", "network-bridged", "-p", port + ":80",
                       "--health-url", "http://guest:80/", "--health-interval", "1s", "--health-retries", "60",
                       FcvmCli::hello_image(), "httpd", "-f", "-p", "80", "-h", "/www"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "web\n");
  auto rec = cli_->record("web");
  ASSERT_FALSE(rec.is_null());
  EXPECT_EQ(rec["health"]["status"], "healthy") << rec.dump();
  EXPECT_EQ(rec["health"]["failing_streak"], 0);
  EXPECT_NE(rec["health"]["last_output"].get<std::string>().find(":" + port + "/: ok"), std::string::npos)
      << "probed through the published port: " << rec["health"].dump();
  EXPECT_EQ(ls_status("web"), "running (healthy)");
  auto inspect = cli_->run({"inspect", "web"});
  ASSERT_EQ(inspect.code, 0) << inspect.err;
  EXPECT_EQ(nlohmann::json::parse(inspect.out)["health"]["status"], "healthy");
  auto now = cli_->run({"healthcheck", "run", "web"});
  EXPECT_EQ(now.code, 0) << now.err;
  EXPECT_EQ(now.out, "healthy\n");
  EXPECT_EQ(cli_->run({"stop", "web"}).code, 0);
}

TEST_F(HealthCheckTest, FailingHealthCmdMakesDetachedRunFailWithTheReasonAndTheVmRunsOnUnhealthy) {
  auto r = podman_run({"-d", "--name", "sick", "--health-cmd", "echo no db >&2; false", "--health-interval", "1s",
                       "--health-retries", "2", FcvmCli::hello_image(), "sleep", "600"});
  EXPECT_EQ(r.code, 125) << r.out << r.err;
  EXPECT_NE(r.err.find("unhealthy (exit code 1: no db)"), std::string::npos) << r.err;
  auto rec = cli_->record("sick");
  ASSERT_FALSE(rec.is_null());
  EXPECT_TRUE(rec["alive"].get<bool>()) << "as podman: an unhealthy container keeps running";
  EXPECT_EQ(rec["health"]["status"], "unhealthy");
  EXPECT_GE(rec["health"]["failing_streak"].get<int>(), 2) << "checks go on every second";
  EXPECT_EQ(ls_status("sick"), "running (unhealthy)");
  auto now = cli_->run({"healthcheck", "run", "sick"});
  EXPECT_EQ(now.code, 1) << now.err;
  EXPECT_EQ(now.out, "unhealthy: exit code 1: no db\n");
  EXPECT_GT(cli_->record("sick")["health"]["failing_streak"].get<int>(), rec["health"]["failing_streak"].get<int>())
      << "the run counts as a check";
  EXPECT_EQ(cli_->run({"stop", "sick"}).code, 0);
}

TEST_F(HealthCheckTest, BadHealthFlagsFailBeforeAnythingBoots) {
  auto bad_interval = podman_run({"--health-cmd", "true", "--health-interval", "soon", FcvmCli::hello_image()});
  EXPECT_EQ(bad_interval.code, 125);
  EXPECT_NE(bad_interval.err.find("--health-interval"), std::string::npos) << bad_interval.err;
  auto unpublished = podman_run({"--network", "network-bridged", "-p", std::to_string(fcvm::testing::free_tcp_port()) + ":80",
                                 "--health-url", "http://guest:81/", FcvmCli::hello_image()});
  EXPECT_EQ(unpublished.code, 125);
  EXPECT_NE(unpublished.err.find("add -p HOST_PORT:81"), std::string::npos) << unpublished.err;
  auto https = podman_run({"--health-url", "https://127.0.0.1/", FcvmCli::hello_image()});
  EXPECT_EQ(https.code, 125);
  EXPECT_NE(https.err.find("only http://"), std::string::npos) << https.err;
  EXPECT_TRUE(cli_->ls().empty());
}

}  // namespace
}  // namespace fcvm::test
