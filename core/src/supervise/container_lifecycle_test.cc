// The exit path: exit codes (128+N for a signal, 125 for a bad report), stops held until
// the container runs, a second stop that kills, a paused guest resumed to stop, and the
// outcome of runs that ended without an exit code.
#include "supervise/container_lifecycle.h"

#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "fcvm/temp_dir.h"
#include "supervise/agent_pair.h"
#include "supervise/fake_vm.h"

namespace fcvm {
namespace {

using Phase = ContainerLifecycle::Phase;

class ContainerLifecycleTest : public ::testing::Test {
 protected:
  ContainerLifecycle make(Phase phase) {
    ContainerLifecycle::Options options;
    options.stop_timeout = std::chrono::milliseconds(2000);
    options.console_log = console_log_;
    options.on_paused = [this](bool paused) { paused_reports_.push_back(paused); };
    return ContainerLifecycle(phase, vm_, agent_.host(), options, null_logger());
  }
  std::vector<agent::ShutdownRequest> shutdowns() {
    std::vector<agent::ShutdownRequest> sent;
    for (const auto& f : agent_.frames_of(agent::FrameType::kShutdown)) {
      std::string err;
      auto r = agent::parse_shutdown_request(f.payload, &err);
      EXPECT_TRUE(r) << err;
      if (r) sent.push_back(*r);
    }
    return sent;
  }

  FakeVm vm_;
  AgentPair agent_;
  std::filesystem::path console_log_ = "/nonexistent/console.log";
  std::vector<bool> paused_reports_;
};

TEST_F(ContainerLifecycleTest, AContainerKilledBySignalNExitsWith128PlusN) {
  auto run = make(Phase::running);
  run.exited(agent::Exit::killed(SIGTERM).to_payload());
  EXPECT_EQ(run.phase(), Phase::stopping);
  EXPECT_TRUE(run.deadline().has_value()) << "waits for the power-off forever";
  vm_.kill();
  auto code = run.outcome();
  ASSERT_TRUE(code.ok()) << code.status().message();
  EXPECT_EQ(*code, 128 + SIGTERM);
}

TEST_F(ContainerLifecycleTest, ABadExitReportIsARunFailure) {
  auto run = make(Phase::running);
  run.exited("{\"code\":\"zero\"}");
  vm_.kill();
  auto code = run.outcome();
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, kRunFailedExit);
}

TEST_F(ContainerLifecycleTest, AStopAskedBeforeTheContainerRunsIsSentOnceItRuns) {
  auto run = make(Phase::booting);
  run.stop(std::chrono::milliseconds(1500), SIGINT);
  run.booted();
  EXPECT_EQ(run.phase(), Phase::starting);
  EXPECT_TRUE(shutdowns().empty()) << "a stop went to an agent that runs no container yet";
  run.started();
  const auto sent = shutdowns();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].signal, SIGINT);
  EXPECT_EQ(sent[0].timeout_ms, 1500u);
  EXPECT_EQ(run.phase(), Phase::stopping);
}

TEST_F(ContainerLifecycleTest, ASecondStopKillsTheVm) {
  auto run = make(Phase::running);
  run.stop();
  EXPECT_EQ(shutdowns().size(), 1u);
  EXPECT_FALSE(vm_.exited());
  run.stop();
  EXPECT_TRUE(vm_.exited());
  EXPECT_TRUE(shutdowns().empty());
}

TEST_F(ContainerLifecycleTest, APausedGuestIsResumedToStop) {
  auto run = make(Phase::running);
  ASSERT_TRUE(run.set_paused(true).ok());
  ASSERT_TRUE(run.set_paused(true).ok());  // pausing a paused VM succeeds, once
  EXPECT_TRUE(vm_.paused());
  run.stop();
  EXPECT_FALSE(vm_.paused());
  EXPECT_FALSE(run.paused());
  EXPECT_EQ(paused_reports_, (std::vector<bool>{true, false}));
  EXPECT_EQ(shutdowns().size(), 1u);
}

TEST_F(ContainerLifecycleTest, TheBootDeadlineFailsTheRunQuotingTheConsole) {
  auto dir = TempDir::create("fcvm-lifecycle-test-");
  ASSERT_TRUE(dir.ok());
  console_log_ = dir->path() / "console.log";
  std::ofstream(console_log_) << "kernel panic: no init\n";
  auto run = make(Phase::booting);
  ASSERT_TRUE(run.deadline().has_value());
  run.deadline_passed();
  EXPECT_TRUE(run.failed());
  auto code = run.outcome();
  ASSERT_FALSE(code.ok());
  EXPECT_EQ(code.status().code(), Errc::timeout);
  EXPECT_NE(code.status().message().find("kernel panic: no init"), std::string::npos)
      << code.status().message();
}

TEST_F(ContainerLifecycleTest, AGuestThatDoesNotPowerOffIsStopped) {
  auto run = make(Phase::running);
  run.stop();
  run.deadline_passed();
  EXPECT_TRUE(vm_.exited());
  EXPECT_FALSE(run.failed());
}

TEST_F(ContainerLifecycleTest, AVmGoneWhileBootingIsABootFailure) {
  auto run = make(Phase::booting);
  vm_.kill();
  auto code = run.outcome();
  ASSERT_FALSE(code.ok());
  EXPECT_NE(code.status().message().find("exited while booting"), std::string::npos);
}

TEST_F(ContainerLifecycleTest, WhyTheContainerDidNotStartIsTheOutcome) {
  auto run = make(Phase::booting);
  run.booted();
  run.agent_error("exec: no such file");
  vm_.kill();
  auto code = run.outcome();
  ASSERT_FALSE(code.ok());
  EXPECT_EQ(code.status().code(), Errc::invalid_argument);
  EXPECT_EQ(code.status().message(), "exec: no such file");
}

TEST_F(ContainerLifecycleTest, AnErrorOnceRunningIsNotWhyItEnded) {
  auto run = make(Phase::running);
  run.agent_error("a warning");
  vm_.kill();
  auto code = run.outcome();
  ASSERT_FALSE(code.ok());
  EXPECT_EQ(code.status().code(), Errc::io);
  EXPECT_NE(code.status().message().find("before the container exited"), std::string::npos);
}

TEST_F(ContainerLifecycleTest, TheFirstFailureWinsOverAnExitCode) {
  auto run = make(Phase::running);
  run.exited(agent::Exit::exited(0).to_payload());
  run.fail(error(Errc::protocol, "first"));
  run.fail(error(Errc::io, "second"));
  auto code = run.outcome();
  ASSERT_FALSE(code.ok());
  EXPECT_EQ(code.status().message(), "first");
}

}  // namespace
}  // namespace fcvm
