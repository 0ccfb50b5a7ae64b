// OutputRelay against real pipes: credit is due only for bytes that left, a guest past its
// window loses the excess, a reader that left is reported once, replayed bytes are never
// credited, and the startup output is kept within its limit.
#include "supervise/output_relay.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

class OutputRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create("fcvm-output-relay-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    dir_ = std::move(*made);
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    reader_.reset(fds[0]);
    writer_.reset(fds[1]);
    ASSERT_GT(::fcntl(writer_.get(), F_SETPIPE_SZ, 4096), 0);
    options_.log = dir_.path() / "container.log";
  }

  std::unique_ptr<OutputRelay> open() {
    auto relay = OutputRelay::open(options_, null_logger());
    EXPECT_TRUE(relay.ok()) << relay.status().message();
    return relay.ok() ? std::move(*relay) : nullptr;
  }
  // Everything the pipe holds now.
  std::string read_pipe() {
    std::string got;
    char buf[65536];
    for (ssize_t n; (n = ::read(reader_.get(), buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
    return got;
  }
  // Reads the pipe and flushes the relay until nothing is queued; the credit that came due.
  std::uint64_t drain_by_reading(OutputRelay& relay, std::string& got) {
    std::uint64_t credit = 0;
    while (relay.wants_write(false)) {
      got += read_pipe();
      credit += relay.flush(false).credit;
    }
    got += read_pipe();
    return credit;
  }
  std::string log() const {
    std::ifstream in(options_.log);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  TempDir dir_;
  UniqueFd reader_, writer_;
  OutputRelay::Options options_;
};

TEST_F(OutputRelayTest, CreditWaitsUntilTheReaderTookTheBytes) {
  options_.stdout_fd = writer_.get();
  auto relay = open();
  ASSERT_TRUE(relay);
  const std::string bytes(64 << 10, 'a');
  const auto first = relay->relay(false, bytes);
  EXPECT_LT(first.credit, bytes.size()) << "credited bytes a full pipe did not take";
  EXPECT_TRUE(relay->wants_write(false));
  EXPECT_GE(relay->poll_fd(false), 0);
  std::string got;
  EXPECT_EQ(first.credit + drain_by_reading(*relay, got), bytes.size());
  EXPECT_EQ(got, bytes);
  EXPECT_EQ(log(), bytes);
}

TEST_F(OutputRelayTest, OutputPastTheWindowIsDroppedAndNeverCredited) {
  options_.stdout_fd = writer_.get();
  auto relay = open();
  ASSERT_TRUE(relay);
  const std::string allowed(kMaxQueuedOutput, 'a');
  const auto first = relay->relay(false, allowed);  // the pipe takes a little, the rest queues
  const auto excess = relay->relay(false, std::string(8192, 'b'));
  EXPECT_EQ(excess.credit, 0u);
  std::string got;
  EXPECT_EQ(first.credit + drain_by_reading(*relay, got), allowed.size());
  EXPECT_EQ(got, allowed) << "the excess reached the reader";
  EXPECT_EQ(log().size(), allowed.size() + 8192) << "the log keeps what the reader lost";
}

TEST_F(OutputRelayTest, AReaderThatLeftIsReportedOnceAndOutputIsCreditedAtOnce) {
  ::signal(SIGPIPE, SIG_IGN);  // as fcvm does: EPIPE instead of death
  options_.stdout_fd = writer_.get();
  options_.stderr_fd = writer_.get();
  auto relay = open();
  ASSERT_TRUE(relay);
  reader_.reset();
  const auto gone = relay->relay(false, "abc");
  EXPECT_TRUE(gone.reader_left);
  EXPECT_EQ(gone.credit, 3u);
  const auto later = relay->relay(true, "de");
  EXPECT_FALSE(later.reader_left);
  EXPECT_EQ(later.credit, 2u);
  EXPECT_EQ(log(), "abcde");
}

TEST_F(OutputRelayTest, ReplayedOutputGoesFirstAndIsNotCredited) {
  options_.stdout_fd = writer_.get();
  auto relay = open();
  ASSERT_TRUE(relay);
  EXPECT_EQ(relay->replay(false, "old ").credit, 0u);
  EXPECT_EQ(relay->relay(false, "new").credit, 3u);
  EXPECT_EQ(read_pipe(), "old new");
}

TEST_F(OutputRelayTest, WithoutAStreamTheLogAloneGetsTheOutputCreditedAtOnce) {
  auto relay = open();
  ASSERT_TRUE(relay);
  EXPECT_EQ(relay->relay(false, "to the log").credit, 10u);
  EXPECT_EQ(relay->poll_fd(false), -1);
  EXPECT_FALSE(relay->wants_write(false));
  EXPECT_EQ(log(), "to the log");
}

TEST_F(OutputRelayTest, StartupOutputIsKeptMergedPerStreamUpToItsLimit) {
  options_.keep_startup_output = 8;
  auto relay = open();
  ASSERT_TRUE(relay);
  relay->relay(false, "12");
  relay->relay(false, "34");
  relay->relay(true, "56");
  (void)relay->replay(false, "replayed is not kept");
  ASSERT_NE(relay->startup_output(), nullptr);
  EXPECT_EQ(*relay->startup_output(), (std::vector<OutputChunk>{{false, "1234"}, {true, "56"}}));
  relay->relay(false, "789");
  EXPECT_EQ(relay->startup_output(), nullptr) << "kept more than its limit";
}

}  // namespace
}  // namespace fcvm
