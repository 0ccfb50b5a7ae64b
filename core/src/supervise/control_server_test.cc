// ControlServer on a real unix socket, with a real agent channel whose guest end is the
// test: malformed input gets an error reply and the VM runs on; requests are refused in
// the wrong phase; an exec's frames reach its client, its output is credited once written
// and its STDIN is held to the agent's window; a client that leaves has its command killed.
#include "supervise/control_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fcvm/temp_dir.h"
#include "supervise/agent_pair.h"
#include "supervise/fake_vm.h"

namespace fcvm {
namespace {

using Phase = ContainerLifecycle::Phase;
constexpr ControlServer::Tags kTags{1, 1000};

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-control-server-test-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
    auto epoll = EpollSet::create();
    ASSERT_TRUE(epoll.ok());
    epoll_.emplace(std::move(*epoll));
  }

  void start(Phase phase) {
    ContainerLifecycle::Options stages;
    stages.console_log = dir_.path() / "console.log";
    lifecycle_.emplace(phase, vm_, agent_.host(), stages, null_logger());
    ControlServer::Options options;
    options.socket = dir_.path() / "control.sock";
    options.rootfs = dir_.path();
    auto server = ControlServer::listen(options, agent_.host(), *lifecycle_, *epoll_, kTags, null_logger());
    ASSERT_TRUE(server.ok()) << server.status().message();
    server_ = std::move(*server);
  }

  // A client connection (blocking, as `fcvm exec`'s).
  UniqueFd connect() {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const auto path = (dir_.path() / "control.sock").string();
    std::copy(path.begin(), path.end(), addr.sun_path);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    return fd;
  }
  void send(int fd, control::MessageType type, std::string_view payload) {
    std::string out;
    ASSERT_TRUE(control::append_message(out, type, payload).ok());
    send_raw(fd, out);
  }
  void send_raw(int fd, std::string_view bytes) {
    ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  void request(int fd, const control::Request& r) { send(fd, control::MessageType::kRequest, control::to_payload(r)); }

  // Runs what the loop would, until nothing is ready.
  void pump() {
    for (;;) {
      epoll_event events[16];
      auto n = epoll_->wait(events, 16, 0);
      ASSERT_TRUE(n.ok());
      if (*n == 0) return;
      for (int i = 0; i < *n; ++i) {
        const auto tag = events[i].data.u64;
        if (tag == kTags.listener) {
          server_->on_listener();
        } else if (tag >= kTags.client_base) {
          server_->on_client(static_cast<std::uint32_t>(tag - kTags.client_base), events[i].events);
        }
      }
    }
  }
  // What the server wrote to the client so far; `closed` whether it closed the connection.
  std::vector<control::Message> received(int fd, bool* closed = nullptr) {
    std::vector<control::Message> out;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) {
        if (closed) *closed = n == 0;
        break;
      }
      EXPECT_TRUE(decoder_.feed(std::string_view(buf, static_cast<std::size_t>(n)), out).ok());
    }
    return out;
  }
  // The reply among `messages`.
  static std::optional<control::Reply> reply_in(const std::vector<control::Message>& messages) {
    for (const auto& m : messages) {
      if (m.type != control::MessageType::kReply) continue;
      auto r = control::parse_reply(m.payload);
      EXPECT_TRUE(r.ok()) << r.status().message();
      if (r.ok()) return *r;
    }
    return std::nullopt;
  }
  // An exec of /bin/cat that the server sent to the agent; its session id.
  std::uint32_t start_exec(int client, bool stdin) {
    control::ExecRequest exec;
    exec.args = {"/bin/cat"};
    exec.stdin = stdin;
    request(client, exec);
    pump();
    const auto sent = agent_.frames_of(agent::FrameType::kExec);
    EXPECT_EQ(sent.size(), 1u);
    return sent.empty() ? 0 : sent[0].session;
  }

  TempDir dir_;
  FakeVm vm_;
  AgentPair agent_;
  std::optional<EpollSet> epoll_;
  std::optional<ContainerLifecycle> lifecycle_;
  std::unique_ptr<ControlServer> server_;
  control::MessageDecoder decoder_{control::Sender::server};
};

TEST_F(ControlServerTest, AMalformedMessageGetsAnErrorReplyAndTheVmRunsOn) {
  start(Phase::running);
  UniqueFd client = connect();
  send_raw(client.get(), std::string("\x05\x00\x00\x00\x7f" "hello", 10));  // an unknown type
  pump();
  bool closed = false;
  auto reply = reply_in(received(client.get(), &closed));
  ASSERT_TRUE(reply);
  ASSERT_FALSE(reply->ok());
  EXPECT_NE(reply->error->find("malformed control message"), std::string::npos) << *reply->error;
  EXPECT_TRUE(closed);
  EXPECT_FALSE(vm_.exited());
  EXPECT_EQ(lifecycle_->phase(), Phase::running);
}

TEST_F(ControlServerTest, ARequestThatDoesNotParseIsRefusedByName) {
  start(Phase::running);
  UniqueFd client = connect();
  send(client.get(), control::MessageType::kRequest, R"({"version":1,"request":"reboot"})");
  pump();
  auto reply = reply_in(received(client.get()));
  ASSERT_TRUE(reply);
  ASSERT_FALSE(reply->ok());
  EXPECT_NE(reply->error->find("reboot"), std::string::npos) << *reply->error;
  EXPECT_TRUE(agent_.frames().empty());
}

TEST_F(ControlServerTest, TheFirstMessageMustBeARequest) {
  start(Phase::running);
  UniqueFd client = connect();
  send(client.get(), control::MessageType::kStdin, "sneaky");
  pump();
  auto reply = reply_in(received(client.get()));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->error, "the first message on the control socket must be a request");
  EXPECT_TRUE(agent_.frames().empty());
}

TEST_F(ControlServerTest, ExecIsRefusedUntilTheContainerRunsAndWhilePaused) {
  start(Phase::starting);
  control::ExecRequest exec;
  exec.args = {"/bin/true"};
  UniqueFd early = connect();
  request(early.get(), exec);
  pump();
  auto reply = reply_in(received(early.get()));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->error, "the container is not running yet; try again");

  lifecycle_->started();
  ASSERT_TRUE(lifecycle_->set_paused(true).ok());
  UniqueFd paused = connect();
  request(paused.get(), exec);
  pump();
  reply = reply_in(received(paused.get()));
  ASSERT_TRUE(reply);
  EXPECT_NE(reply->error->find("paused"), std::string::npos);
  EXPECT_TRUE(agent_.frames_of(agent::FrameType::kExec).empty());
}

TEST_F(ControlServerTest, RequestsWithoutTheirMeansAreRefused) {
  start(Phase::running);
  UniqueFd health = connect();
  request(health.get(), control::HealthcheckRequest{});
  UniqueFd snapshot = connect();
  request(snapshot.get(), control::SnapshotRequest{"t", false});
  pump();
  auto reply = reply_in(received(health.get()));
  ASSERT_TRUE(reply);
  EXPECT_NE(reply->error->find("no health check"), std::string::npos);
  reply = reply_in(received(snapshot.get()));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->error, "this VM cannot be snapshotted");
}

TEST_F(ControlServerTest, PauseAndStopRequestsReachTheVm) {
  start(Phase::running);
  UniqueFd pause = connect();
  request(pause.get(), control::PauseRequest{});
  pump();
  auto reply = reply_in(received(pause.get()));
  ASSERT_TRUE(reply);
  EXPECT_TRUE(reply->ok());
  EXPECT_TRUE(vm_.paused());

  UniqueFd stop = connect();
  request(stop.get(), control::StopRequest{3000});
  pump();
  reply = reply_in(received(stop.get()));
  ASSERT_TRUE(reply);
  EXPECT_TRUE(reply->ok());
  EXPECT_FALSE(vm_.paused()) << "a paused guest cannot stop its container";
  EXPECT_EQ(agent_.frames_of(agent::FrameType::kShutdown).size(), 1u);
  EXPECT_EQ(lifecycle_->phase(), Phase::stopping);
}

TEST_F(ControlServerTest, AnExecsFramesReachItsClientAndItsOutputIsCreditedOnceWritten) {
  start(Phase::running);
  UniqueFd client = connect();
  const std::uint32_t session = start_exec(client.get(), false);
  ASSERT_NE(session, 0u);
  server_->on_exec_frame({agent::FrameType::kStarted, session, "{}"});
  server_->on_exec_frame({agent::FrameType::kStdout, session, "hello"});
  server_->on_exec_frame({agent::FrameType::kExit, session, agent::Exit::killed(9).to_payload()});
  bool closed = false;
  const auto messages = received(client.get(), &closed);
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[0].type, control::MessageType::kReply);
  EXPECT_EQ(messages[1], (control::Message{control::MessageType::kStdout, "hello"}));
  ASSERT_EQ(messages[2].type, control::MessageType::kExit);
  auto report = control::parse_exit_report(messages[2].payload);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(*report, (control::ExitReport{137, 9}));
  EXPECT_TRUE(closed);
  const auto credits = agent_.frames_of(agent::FrameType::kCredit);
  ASSERT_EQ(credits.size(), 1u);
  EXPECT_EQ(credits[0].session, session);
  std::string err;
  EXPECT_EQ(agent::parse_credit(credits[0].payload, &err)->bytes, 5u);
}

TEST_F(ControlServerTest, AClientsStdinIsHeldToTheAgentsWindow) {
  start(Phase::running);
  UniqueFd client = connect();
  const std::uint32_t session = start_exec(client.get(), true);
  ASSERT_NE(session, 0u);
  const std::string input(agent::kStdinWindow + 100, 'i');
  // In pieces the sockets take without the server reading: the client blocks on a full one.
  for (std::size_t at = 0; at < input.size(); at += 32 << 10) {
    send(client.get(), control::MessageType::kStdin, std::string_view(input).substr(at, 32 << 10));
    pump();
  }
  send(client.get(), control::MessageType::kStdinEof, "");
  pump();
  auto frames = agent_.frames();
  std::string sent;
  for (const auto& f : frames) {
    EXPECT_NE(f.type, agent::FrameType::kStdinEof) << "EOF overtook held input";
    if (f.type == agent::FrameType::kStdin) sent += f.payload;
  }
  EXPECT_EQ(sent.size(), agent::kStdinWindow);
  server_->on_stdin_credit(session, 100);
  frames = agent_.frames();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].payload.size(), 100u);
  EXPECT_EQ(frames[1].type, agent::FrameType::kStdinEof);
}

TEST_F(ControlServerTest, AClientThatLeavesHasItsCommandKilled) {
  start(Phase::running);
  UniqueFd client = connect();
  const std::uint32_t session = start_exec(client.get(), false);
  ASSERT_NE(session, 0u);
  client.reset();
  pump();
  const auto signals = agent_.frames_of(agent::FrameType::kSignal);
  ASSERT_EQ(signals.size(), 1u);
  EXPECT_EQ(signals[0].session, session);
  std::string err;
  auto sig = agent::parse_signal_request(signals[0].payload, &err);
  ASSERT_TRUE(sig) << err;
  EXPECT_EQ(sig->signal, SIGKILL);
}

TEST_F(ControlServerTest, SessionIdsAreNeverReused) {
  start(Phase::running);
  server_->reserve_up_to(41);
  EXPECT_EQ(server_->new_session(), 42u);
  UniqueFd client = connect();
  EXPECT_EQ(start_exec(client.get(), false), 43u);
}

}  // namespace
}  // namespace fcvm
