// MainInput against a real pipe, file and pseudo-terminal, and a real agent channel: our
// stdin is held to the STDIN window, read only once the process runs, ends with one
// STDIN_EOF; a resize sends the terminal's size.
#include "supervise/main_input.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "fcvm/temp_dir.h"
#include "supervise/agent_pair.h"

namespace fcvm {
namespace {

constexpr std::uint64_t kTag = 5;

class MainInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto epoll = EpollSet::create();
    ASSERT_TRUE(epoll.ok()) << epoll.status().message();
    epoll_.emplace(std::move(*epoll));
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    reader_.reset(fds[0]);
    writer_.reset(fds[1]);
  }
  // Whether the loop would read our stdin now.
  bool watched() {
    epoll_event events[4];
    auto n = epoll_->wait(events, 4, 0);
    EXPECT_TRUE(n.ok());
    return n.ok() && *n == 1 && events[0].data.u64 == kTag;
  }
  void write_all(const std::string& bytes) {
    ASSERT_EQ(::write(writer_.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

  AgentPair agent_;
  std::optional<EpollSet> epoll_;
  UniqueFd reader_, writer_;
};

TEST_F(MainInputTest, NothingIsReadBeforeTheProcessStarted) {
  MainInput input(reader_.get(), /*forward=*/true, agent_.host(), *epoll_, kTag);
  write_all("early");
  EXPECT_FALSE(watched());
  input.on_readable();
  EXPECT_TRUE(agent_.frames().empty());
  input.started();
  EXPECT_TRUE(watched());
  input.on_readable();
  const auto frames = agent_.frames_of(agent::FrameType::kStdin);
  EXPECT_EQ(joined_payloads(frames), "early");
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames[0].session, agent::kMainSession);
}

TEST_F(MainInputTest, WithoutForwardingStdinIsNeverRead) {
  MainInput input(reader_.get(), /*forward=*/false, agent_.host(), *epoll_, kTag);
  input.started();
  write_all("ignored");
  EXPECT_FALSE(watched());
  input.on_readable();
  EXPECT_TRUE(agent_.frames().empty());
}

TEST_F(MainInputTest, AFullWindowStopsReadingUntilCredited) {
  ASSERT_GT(::fcntl(writer_.get(), F_SETPIPE_SZ, 1 << 20), 0);
  write_all(std::string(agent::kStdinWindow + 1000, 'i'));
  MainInput input(reader_.get(), true, agent_.host(), *epoll_, kTag);
  input.started();
  for (int i = 0; i < 20; ++i) input.on_readable();  // more rounds than the window takes
  EXPECT_EQ(joined_payloads(agent_.frames_of(agent::FrameType::kStdin)).size(), agent::kStdinWindow);
  EXPECT_EQ(input.in_flight(), agent::kStdinWindow);
  EXPECT_FALSE(watched()) << "stdin is watched with the window full";
  input.on_credit(600);
  EXPECT_TRUE(watched());
  input.on_readable();
  EXPECT_EQ(joined_payloads(agent_.frames_of(agent::FrameType::kStdin)).size(), 600u);
}

TEST_F(MainInputTest, EndOfInputSendsOneStdinEof) {
  MainInput input(reader_.get(), true, agent_.host(), *epoll_, kTag);
  input.started();
  write_all("last");
  writer_.reset();
  input.on_readable();
  input.on_readable();
  input.on_readable();  // after EOF: nothing more
  const auto frames = agent_.frames();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].type, agent::FrameType::kStdin);
  EXPECT_EQ(frames[1].type, agent::FrameType::kStdinEof);
  EXPECT_FALSE(watched());
}

TEST_F(MainInputTest, ARegularFileIsReadOnPoll) {
  auto dir = TempDir::create("fcvm-main-input-test-");
  ASSERT_TRUE(dir.ok());
  const auto path = dir->path() / "stdin";
  {
    UniqueFd out(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_EQ(::write(out.get(), "from a file", 11), 11);
  }
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  MainInput input(file.get(), true, agent_.host(), *epoll_, kTag);
  input.started();
  input.poll();
  input.poll();
  const auto frames = agent_.frames();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].payload, "from a file");
  EXPECT_EQ(frames[1].type, agent::FrameType::kStdinEof);
}

TEST_F(MainInputTest, AResizeSendsTheTerminalsSizeOnceTheProcessRuns) {
  UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master || ::grantpt(master.get()) != 0 || ::unlockpt(master.get()) != 0) {
    GTEST_SKIP() << "no pseudo-terminals here (/dev/ptmx)";
  }
  UniqueFd terminal(::open(::ptsname(master.get()), O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(terminal);
  winsize size{};
  size.ws_row = 33;
  size.ws_col = 101;
  ASSERT_EQ(::ioctl(terminal.get(), TIOCSWINSZ, &size), 0);
  MainInput input(terminal.get(), /*forward=*/false, agent_.host(), *epoll_, kTag);
  input.on_resize();
  EXPECT_TRUE(agent_.frames().empty()) << "resized a process that does not run yet";
  input.started();
  input.on_resize();
  const auto frames = agent_.frames_of(agent::FrameType::kResize);
  ASSERT_EQ(frames.size(), 1u);
  std::string err;
  auto sent = agent::parse_window_size(frames[0].payload, &err);
  ASSERT_TRUE(sent) << err;
  EXPECT_EQ(*sent, (agent::WindowSize{33, 101}));
}

TEST_F(MainInputTest, AResizeWithoutATerminalSendsNothing) {
  MainInput input(reader_.get(), false, agent_.host(), *epoll_, kTag);
  input.started();
  input.on_resize();
  EXPECT_TRUE(agent_.frames().empty());
}

}  // namespace
}  // namespace fcvm
