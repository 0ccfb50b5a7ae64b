// HealthMonitor driven as the VM's loop drives it: its fd polled, on_ready() and on_frame()
// called. URL checks probe a real HTTP server on loopback; command checks get the agent's
// frames from the test, which stands in for the guest (the e2e suite runs them in a VM).
#include "health/health_monitor.h"

#include <gtest/gtest.h>
#include <poll.h>

#include "health/http_stub.h"
#include "sdk/net_test_support.h"

namespace fcvm {
namespace {

using namespace std::chrono_literals;

// The loop's side of exec sessions: records what the monitor asked for.
class RecordingExec final : public GuestExec {
 public:
  bool container_running() const override { return running; }
  bool paused() const override { return vm_paused; }
  Result<std::uint32_t> start_exec(const agent::Process& process) override {
    started.push_back(process);
    return next_session++;
  }
  void kill_exec(std::uint32_t session) override { killed.push_back(session); }

  bool running = true;
  bool vm_paused = false;
  std::uint32_t next_session = 7;
  std::vector<agent::Process> started;
  std::vector<std::uint32_t> killed;
};

class HealthMonitorTest : public ::testing::Test {
 protected:
  void create(HealthCheckSpec spec) {
    agent::Process defaults;
    defaults.args = {"httpd"};
    defaults.env = {"PATH=/bin", "MODE=test"};
    defaults.cwd = "/www";
    defaults.uid = 33;
    auto m = HealthMonitor::create(std::move(spec), defaults,
                                   [this](const HealthState& s) { reports.push_back(s); }, null_logger());
    ASSERT_TRUE(m.ok()) << m.status().message();
    monitor = std::move(*m);
  }
  // Runs the monitor as the loop does until it has reported `count` results in all.
  void run_until_reports(size_t count) {
    while (reports.size() < count) {
      pollfd p{monitor->fd(), POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, -1), 1);
      monitor->on_ready();
    }
  }
  void exit_with(std::uint32_t session, int code, const std::string& stderr_text = {}) {
    if (!stderr_text.empty()) {
      EXPECT_TRUE(monitor->on_frame({agent::FrameType::kStderr, session, stderr_text}));
    }
    EXPECT_TRUE(monitor->on_frame({agent::FrameType::kExit, session, agent::Exit::exited(code).to_payload()}));
  }

  RecordingExec exec;
  std::unique_ptr<HealthMonitor> monitor;
  std::vector<HealthState> reports;
};

TEST_F(HealthMonitorTest, UrlCheckAgainstARealServerBecomesHealthy) {
  HttpStub server("HTTP/1.0 200 OK\r\n\r\nfine");
  HealthCheckSpec spec;
  spec.url = server.url("/healthz");
  spec.interval = 1h;
  spec.timeout = 30s;
  create(spec);
  monitor->start(exec);
  run_until_reports(1);
  EXPECT_EQ(reports[0].status, HealthStatus::healthy);
  EXPECT_EQ(reports[0].failing_streak, 0u);
  EXPECT_EQ(reports[0].last_output, "HTTP GET " + server.url("/healthz") + ": ok");
  EXPECT_FALSE(reports[0].checked.empty());
  EXPECT_TRUE(exec.started.empty()) << "a URL check runs nothing in the guest";
}

TEST_F(HealthMonitorTest, ProbeNowRunsAnExtraCheckAndAnswersFromTheLoop) {
  HttpStub server("HTTP/1.0 503 Busy\r\n\r\n");
  HealthCheckSpec spec;
  spec.url = server.url();
  spec.interval = 1h;
  create(spec);
  EXPECT_FALSE(monitor->probe_now([](const HealthState&, const Status&) {})) << "not started";
  monitor->start(exec);
  run_until_reports(1);
  std::optional<Status> outcome;
  std::string output;
  ASSERT_TRUE(monitor->probe_now([&](const HealthState& s, const Status& st) {
    outcome = st;
    output = s.last_output;
  }));
  EXPECT_FALSE(outcome) << "answered from the loop, not inside probe_now";
  run_until_reports(2);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->message(), "HTTP status 503");
  EXPECT_EQ(output, "HTTP status 503");
  EXPECT_EQ(reports[1].failing_streak, 2u);
  exec.running = false;
  EXPECT_FALSE(monitor->probe_now([](const HealthState&, const Status&) {})) << "the container stopped";
}

TEST_F(HealthMonitorTest, RefusedUrlFailsRetriesTimesThenIsUnhealthy) {
  HealthCheckSpec spec;
  spec.url = "http://127.0.0.1:" + std::to_string(fcvm::testing::free_tcp_port()) + "/";
  spec.interval = 10ms;
  spec.retries = 2;
  create(spec);
  monitor->start(exec);
  run_until_reports(2);
  EXPECT_EQ(reports[0].status, HealthStatus::starting);
  EXPECT_EQ(reports[0].failing_streak, 1u);
  EXPECT_EQ(reports[1].status, HealthStatus::unhealthy);
  EXPECT_EQ(reports[1].failing_streak, 2u);
  EXPECT_NE(reports[1].last_output.find("Connection refused"), std::string::npos) << reports[1].last_output;
}

TEST_F(HealthMonitorTest, CommandRunsAsExecSessionsWithTheMainProcessDefaults) {
  HealthCheckSpec spec;
  spec.command = {"/bin/sh", "-c", "test -e /ready"};
  spec.interval = 10ms;
  spec.retries = 1;
  create(spec);
  monitor->start(exec);
  ASSERT_EQ(exec.started.size(), 1u) << "the first probe starts at once";
  const agent::Process& p = exec.started[0];
  EXPECT_EQ(p.args, spec.command);
  EXPECT_EQ(p.env, (std::vector<std::string>{"PATH=/bin", "MODE=test"}));
  EXPECT_EQ(p.cwd, "/www");
  EXPECT_EQ(p.uid, 33u);
  EXPECT_FALSE(p.stdin);

  EXPECT_FALSE(monitor->on_frame({agent::FrameType::kStdout, 3, "a client's output"}));
  EXPECT_TRUE(monitor->on_frame({agent::FrameType::kStarted, 7, R"({"pid":12})"}));
  exit_with(7, 1, "no \x1b[1m/ready\n");
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].status, HealthStatus::unhealthy);
  EXPECT_EQ(reports[0].last_output, "exit code 1: no \\x1b[1m/ready");

  // The next probe, one interval after the first began, is a new session.
  while (exec.started.size() < 2) {
    pollfd p2{monitor->fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p2, 1, -1), 1);
    monitor->on_ready();
  }
  EXPECT_FALSE(monitor->on_frame({agent::FrameType::kExit, 7, agent::Exit::exited(0).to_payload()}))
      << "the old session is over";
  exit_with(8, 0);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[1].status, HealthStatus::healthy);
  EXPECT_EQ(reports[1].failing_streak, 0u);
}

TEST_F(HealthMonitorTest, ACommandPastItsTimeoutIsKilledAndFails) {
  HealthCheckSpec spec;
  spec.command = {"/bin/sh", "-c", "sleep 1000"};
  spec.timeout = 20ms;
  spec.interval = 1h;
  create(spec);
  monitor->start(exec);
  ASSERT_EQ(exec.started.size(), 1u);
  run_until_reports(1);
  EXPECT_EQ(exec.killed, std::vector<std::uint32_t>{7});
  EXPECT_EQ(reports[0].status, HealthStatus::starting) << "one failure of three";
  EXPECT_EQ(reports[0].last_output, "timed out after 20 ms");
  EXPECT_FALSE(monitor->on_frame({agent::FrameType::kExit, 7, agent::Exit::killed(9).to_payload()}));
}

TEST_F(HealthMonitorTest, APausedVmIsNotProbedUntilItRunsAgain) {
  HealthCheckSpec spec;
  spec.command = {"/bin/sh", "-c", "true"};
  spec.interval = 10ms;
  create(spec);
  exec.vm_paused = true;
  monitor->start(exec);
  EXPECT_TRUE(exec.started.empty());
  std::optional<Status> outcome;
  ASSERT_TRUE(monitor->probe_now([&](const HealthState&, const Status& st) { outcome = st; }));
  while (!outcome) {
    pollfd p{monitor->fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, -1), 1);
    monitor->on_ready();
  }
  EXPECT_NE(outcome->message().find("paused"), std::string::npos) << outcome->message();
  EXPECT_TRUE(exec.started.empty());
  EXPECT_TRUE(reports.empty()) << "a skipped probe is no failure";
  exec.vm_paused = false;
  while (exec.started.empty()) {
    pollfd p{monitor->fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, -1), 1);
    monitor->on_ready();
  }
  exit_with(7, 0);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].status, HealthStatus::healthy);
}

TEST_F(HealthMonitorTest, NoProbeOnceTheContainerStops) {
  HealthCheckSpec spec;
  spec.command = {"/bin/sh", "-c", "true"};
  create(spec);
  exec.running = false;
  monitor->start(exec);
  EXPECT_TRUE(exec.started.empty());
  pollfd p{monitor->fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "nothing armed";
}

}  // namespace
}  // namespace fcvm
