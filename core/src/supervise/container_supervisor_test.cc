// The VM's event loop against a fake agent on a socketpair: a hostile guest that ignores its
// output window, writes for sessions nobody opened or breaks the framing leaves the host
// bounded and reports the container's exit (or stops the VM); output replay and keeping.
#include "supervise/container_supervisor.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <thread>

#include "fcvm/temp_dir.h"
#include "supervise/fake_vm.h"

namespace fcvm {
namespace {

// Lines the loop logged, for checking what reached the host log.
class RecordingLogger final : public Logger {
 public:
  void write(LogLevel, std::string_view message) const override {
    std::lock_guard lock(mu_);
    lines_ += std::string(message) + "\n";
  }
  bool enabled(LogLevel) const override { return true; }
  std::shared_ptr<const Logger> child(std::string_view) const override { return self_.lock(); }
  std::string all() const {
    std::lock_guard lock(mu_);
    return lines_;
  }
  std::weak_ptr<const Logger> self_;

 private:
  mutable std::mutex mu_;
  mutable std::string lines_;
};

std::uint64_t rss_kib() {
  std::ifstream in("/proc/self/status");
  for (std::string key; in >> key;) {
    std::uint64_t value = 0;
    if (key == "VmRSS:" && in >> value) return value;
  }
  return 0;
}

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-supervisor-test-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    guest_.reset(fds[1]);
    auto channel = AgentChannel::adopt(UniqueFd(fds[0]));
    ASSERT_TRUE(channel.ok()) << channel.status().message();
    channel_.emplace(std::move(*channel));
    log_ = std::make_shared<RecordingLogger>();
    log_->self_ = log_;
    // A restored guest: the loop starts with the container running.
    options_.control_socket = dir_.path() / "control.sock";
    options_.output_log = dir_.path() / "container.log";
    options_.console_log = dir_.path() / "console.log";
    options_.forward_output = false;
    options_.log_max_bytes = 1 << 20;
    options_.stop_timeout = std::chrono::milliseconds(2000);
  }

  // What the fake agent writes: frames, or raw bytes.
  void send(agent::FrameType type, std::uint32_t session, std::string_view payload) {
    std::string out;
    ASSERT_TRUE(agent::append_frame(out, type, session, payload));
    send_raw(out);
  }
  void send_raw(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(guest_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the test ended the conversation
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  // Runs the loop while `guest` plays the agent on another thread; `after` sees the
  // supervisor once its loop ended.
  Result<int> run(const std::function<void()>& guest,
                  const std::function<void(ContainerSupervisor&)>& after = nullptr) {
    ContainerSupervisor supervisor(vm_, *channel_, options_, log_);
    std::thread agent(guest);
    auto code = supervisor.run();
    ::shutdown(guest_.get(), SHUT_RDWR);  // a guest still writing gets EPIPE
    agent.join();
    if (after) after(supervisor);
    return code;
  }

  std::string container_log() const {
    std::ifstream log(options_.output_log);
    return std::string(std::istreambuf_iterator<char>(log), {});
  }

  TempDir dir_;
  UniqueFd guest_;
  std::optional<AgentChannel> channel_;
  FakeVm vm_;
  SupervisorOptions options_;
  std::shared_ptr<RecordingLogger> log_;
};

TEST_F(SupervisorTest, OutputBeyondItsWindowKeepsTheHostBoundedAndTheExitArrives) {
  const std::uint64_t rss_before = rss_kib();
  const std::string chunk(agent::kMaxPayloadSize, 'x');
  constexpr int kChunks = 256;  // 256 MiB, a thousand windows, never waiting for credit
  auto code = run([&] {
    for (int i = 0; i < kChunks; ++i) send(agent::FrameType::kStdout, agent::kMainSession, chunk);
    send(agent::FrameType::kExit, agent::kMainSession, agent::Exit::exited(3).to_payload());
    vm_.kill();
  });
  ASSERT_TRUE(code.ok()) << code.status().message();
  EXPECT_EQ(*code, 3);
  const std::uint64_t grown_mib = (rss_kib() - std::min(rss_kib(), rss_before)) / 1024;
  EXPECT_LT(grown_mib, 64u) << "the host kept the guest's output in memory";
  std::error_code ec;
  const auto kept = std::filesystem::file_size(options_.output_log, ec) +
                    std::filesystem::file_size(options_.output_log.string() + ".1", ec);
  EXPECT_LE(kept, 2 * options_.log_max_bytes + agent::kMaxPayloadSize) << "the container log is capped";
}

TEST_F(SupervisorTest, FramesForSessionsNobodyOpenedAreDroppedAndTheLoopServesOn) {
  auto code = run([&] {
    send(agent::FrameType::kStdout, 77, "to nobody");
    send(agent::FrameType::kExit, 99, agent::Exit::exited(1).to_payload());
    send(agent::FrameType::kStarted, 12345, "{}");
    send(agent::FrameType::kError, agent::kMainSession,
         R"({"message":"\u001b]0;owned\u0007\u001b[2Jhostile"})");
    send(agent::FrameType::kStdout, agent::kMainSession, "still here\n");
    send(agent::FrameType::kExit, agent::kMainSession, agent::Exit::exited(5).to_payload());
    vm_.kill();
  });
  ASSERT_TRUE(code.ok()) << code.status().message();
  EXPECT_EQ(*code, 5);
  EXPECT_EQ(container_log(), "still here\n");
}

TEST_F(SupervisorTest, BrokenFramingEndsTheRunWithAnErrorAndStopsTheVm) {
  auto code = run([&] {
    send(agent::FrameType::kStdout, agent::kMainSession, "before\n");
    std::string bad;
    agent::detail::put_le32(bad, agent::kMaxPayloadSize + 1);  // a length past the limit
    bad.push_back(static_cast<char>(agent::FrameType::kStdout));
    agent::detail::put_le32(bad, agent::kMainSession);
    send_raw(bad);
    send_raw(std::string(1 << 16, 'z'));  // and junk the host must not buffer or parse
    // A host that ignored the break would wait for the VM forever: end it after a while.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!vm_.exited() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    vm_.kill();
  });
  ASSERT_FALSE(code.ok()) << "exit " << (code.ok() ? *code : -1);
  EXPECT_NE(code.status().message().find("exceeds the limit"), std::string::npos) << code.status().message();
  EXPECT_TRUE(vm_.exited().has_value()) << "the VM of a broken channel is stopped";
}

// A cached start taken once healthy: what the first run printed comes first, then the
// guest's own output.
TEST_F(SupervisorTest, ReplayedOutputComesBeforeTheGuests) {
  options_.replay_output = {{false, "drew 1\n"}, {true, "warming\n"}};
  auto code = run([&] {
    send(agent::FrameType::kStdout, agent::kMainSession, "still 1\n");
    send(agent::FrameType::kExit, agent::kMainSession, agent::Exit::exited(7).to_payload());
    vm_.kill();
  });
  ASSERT_TRUE(code.ok()) << code.status().message();
  EXPECT_EQ(*code, 7);
  EXPECT_EQ(container_log(), "drew 1\nwarming\nstill 1\n");
}

// The output kept for a startup snapshot: chunks merged per stream, in order, and nothing
// once it outgrew its limit (a guest cannot make the host keep more).
TEST_F(SupervisorTest, StartupOutputIsKeptUpToItsLimitOnly) {
  options_.keep_startup_output = 10;
  auto guest = [&](std::string more) {
    return [this, more] {
      send(agent::FrameType::kStdout, agent::kMainSession, "12");
      send(agent::FrameType::kStdout, agent::kMainSession, "34");
      send(agent::FrameType::kStderr, agent::kMainSession, "56");
      send(agent::FrameType::kStdout, agent::kMainSession, more);
      send(agent::FrameType::kExit, agent::kMainSession, agent::Exit::exited(0).to_payload());
      vm_.kill();
    };
  };
  auto code = run(guest("7890"), [](ContainerSupervisor& s) {
    ASSERT_NE(s.startup_output(), nullptr);
    EXPECT_EQ(*s.startup_output(),
              (std::vector<OutputChunk>{{false, "1234"}, {true, "56"}, {false, "7890"}}));
  });
  EXPECT_TRUE(code.ok());
}

TEST_F(SupervisorTest, StartupOutputPastItsLimitIsDropped) {
  options_.keep_startup_output = 10;
  auto code = run(
      [&] {
        send(agent::FrameType::kStdout, agent::kMainSession, "12345678901");
        send(agent::FrameType::kExit, agent::kMainSession, agent::Exit::exited(0).to_payload());
        vm_.kill();
      },
      [](ContainerSupervisor& s) { EXPECT_EQ(s.startup_output(), nullptr); });
  EXPECT_TRUE(code.ok());
}

// Work posted to the loop runs between two rounds; with the VM paused, drain_agent reads
// what the guest wrote around the pause, so the output kept for a startup snapshot is
// complete.
TEST_F(SupervisorTest, PostedWorkDrainsWhatTheGuestWroteBeforeThePause) {
  options_.keep_startup_output = 1 << 10;
  std::vector<OutputChunk> seen;
  bool ran = false;
  ContainerSupervisor* supervisor = nullptr;
  options_.on_started = [&] {
    supervisor->post([&] {
      ran = true;
      (void)vm_.pause();
      supervisor->drain_agent(std::chrono::seconds(2));
      if (supervisor->startup_output()) seen = *supervisor->startup_output();
    });
  };
  ContainerSupervisor loop(vm_, *channel_, options_, log_);
  supervisor = &loop;
  std::thread agent([&] {
    send(agent::FrameType::kStdout, agent::kMainSession, "before ");
    while (!vm_.paused()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    send(agent::FrameType::kStdout, agent::kMainSession, "at the pause");
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // past the drain's quiet time
    send(agent::FrameType::kExit, agent::kMainSession, agent::Exit::exited(0).to_payload());
    vm_.kill();
  });
  auto code = loop.run();
  ::shutdown(guest_.get(), SHUT_RDWR);
  agent.join();
  EXPECT_TRUE(code.ok());
  EXPECT_TRUE(ran);
  EXPECT_EQ(seen, (std::vector<OutputChunk>{{false, "before at the pause"}}));
}

}  // namespace
}  // namespace fcvm
