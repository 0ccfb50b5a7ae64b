#include "fcvm/child_exit_report.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "fcvm/temp_dir.h"
#include "fcvm/unique_fd.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

class ChildExitReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-child-exit-test-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
    log_ = dir_.path() / "child.log";
  }

  // Runs `script` under sh with stdout and stderr appended to log_.
  ChildProcess spawn(const std::string& script) {
    UniqueFd fd(::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    EXPECT_TRUE(fd.valid());
    SpawnOptions options;
    options.argv = {"/bin/sh", "-c", script};
    options.stdout_fd = fd.get();
    options.stderr_fd = fd.get();
    auto child = ChildProcess::spawn(options);
    EXPECT_TRUE(child.ok()) << child.status().message();
    return child.ok() ? std::move(*child) : ChildProcess();
  }

  TempDir dir_;
  fs::path log_;
};

TEST_F(ChildExitReportTest, LogTailKeepsTheLastLinesThatAreNotBlankFromTheOffsetOn) {
  std::ofstream(log_) << "before\nfirst\n\n  \nsecond\nthird\r\nfourth";
  EXPECT_EQ(log_tail({log_, 0}), "second / third\r / fourth");
  EXPECT_EQ(log_tail({log_, 0}, 1), "fourth");
  EXPECT_EQ(log_tail({log_, static_cast<off_t>(fs::file_size(log_)) - 6}), "fourth");
  EXPECT_EQ(log_tail({log_, static_cast<off_t>(fs::file_size(log_))}), "");
  EXPECT_EQ(log_tail({dir_.path() / "missing", 0}), "");
}

TEST_F(ChildExitReportTest, LogTailReadsOnlyTheEndOfALargeLog) {
  {
    std::ofstream out(log_);
    out << "very first line\n";
    for (int i = 0; i < 1000; ++i) out << "line " << i << "\n";
  }
  EXPECT_EQ(log_tail({log_, 0}), "line 997 / line 998 / line 999");
  EXPECT_EQ(log_tail({log_, 0}, 2000).find("very first line"), std::string::npos);
}

TEST_F(ChildExitReportTest, DescribesTheExitWithTheFirstLogThatHasLines) {
  std::ofstream(log_) << "an earlier run's line\n";
  const off_t start = static_cast<off_t>(fs::file_size(log_));
  ChildProcess child = spawn("echo 'vmm: bad option' >&2; exit 3");
  ASSERT_TRUE(child.valid());
  const auto status = child.wait();
  ASSERT_TRUE(status.has_value());

  const ChildExitReport quiet("VMM", {{dir_.path() / "none.log", 0}});
  EXPECT_EQ(quiet.describe(*status), "VMM exited (exit code 3)");
  const ChildExitReport report("VMM", {{dir_.path() / "none.log", 0}, {log_, start}});
  EXPECT_EQ(report.describe(*status), "VMM exited (exit code 3): vmm: bad option");
}

TEST_F(ChildExitReportTest, ARunningChildPassesAndItsFailuresAreLeftAlone) {
  ChildProcess child = spawn("exec sleep 600");
  ASSERT_TRUE(child.valid());
  const ChildExitReport report("VMM", {{log_, 0}});
  EXPECT_TRUE(report.check_running(child).ok());
  const Status timeout = error(Errc::timeout, "no answer");
  const Status explained = report.explain(child, timeout);
  EXPECT_EQ(explained.code(), Errc::timeout);
  EXPECT_EQ(explained.message(), "no answer");
  EXPECT_TRUE(report.explain(child, ok_status()).ok());
  child.kill();
}

TEST_F(ChildExitReportTest, AFailureOfAnExitedChildSaysItExited) {
  ChildProcess child = spawn("echo 'guest panicked'; kill -9 $$");
  ASSERT_TRUE(child.valid());
  ASSERT_TRUE(child.wait().has_value());
  const ChildExitReport report("VMM", {{log_, 0}});

  const Status gone = report.check_running(child);
  EXPECT_EQ(gone.code(), Errc::unavailable);
  EXPECT_EQ(gone.message(), "VMM exited (killed by signal 9 (Killed)): guest panicked");

  const Status explained = report.explain(child, error(Errc::io, "read: connection reset"));
  EXPECT_EQ(explained.code(), Errc::unavailable);
  EXPECT_EQ(explained.message(),
            "VMM exited (killed by signal 9 (Killed)): guest panicked (read: connection reset)");
}

// A closed socket comes before the exit: explain waits for the exit that follows it.
TEST_F(ChildExitReportTest, AnIoFailureWaitsForTheExitThatFollowsIt) {
  ChildProcess child = spawn("read line; echo 'shutting down'; exit 1");
  ASSERT_TRUE(child.valid());
  // The child reads /dev/null (its stdin), so it exits on its own, whenever it runs.
  const ChildExitReport report("VMM", {{log_, 0}});
  const Status explained =
      report.explain(child, error(Errc::io, "EOF"), std::chrono::minutes(5));
  EXPECT_EQ(explained.code(), Errc::unavailable);
  EXPECT_EQ(explained.message(), "VMM exited (exit code 1): shutting down (EOF)");
}

}  // namespace
}  // namespace fcvm
