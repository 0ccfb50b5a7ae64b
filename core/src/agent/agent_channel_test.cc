#include "agent/agent_channel.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <thread>

namespace fcvm {
namespace {

using namespace std::chrono_literals;
using agent::Frame;
using agent::FrameType;

// A channel and the raw "guest" end of a socketpair.
struct Pair {
  AgentChannel channel;
  UniqueFd guest;
};

Pair make_pair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  auto ch = AgentChannel::adopt(UniqueFd(sv[0]));
  EXPECT_TRUE(ch.ok());
  return Pair{std::move(*ch), UniqueFd(sv[1])};
}

void guest_write(const Pair& p, std::string_view bytes) {
  ASSERT_EQ(::write(p.guest.get(), bytes.data(), bytes.size()),
            static_cast<ssize_t>(bytes.size()));
}

std::string frame(FrameType type, std::uint32_t session, std::string_view payload) {
  std::string out;
  agent::append_frame(out, type, session, payload);
  return out;
}

std::string hello() {
  agent::Hello h;
  h.kernel = "6.1-test";
  return frame(FrameType::kHello, 0, h.to_payload());
}

TEST(AgentChannel, DecodesFramesSplitAcrossReads) {
  Pair p = make_pair();
  const std::string wire = frame(FrameType::kStdout, 2, "abcdef") + frame(FrameType::kExit, 2, R"({"code":0,"signal":0})");
  std::vector<Frame> got;
  for (std::size_t i = 0; i < wire.size(); i += 4) {
    guest_write(p, std::string_view(wire).substr(i, 4));
    auto frames = p.channel.on_readable();
    ASSERT_TRUE(frames.ok()) << frames.status().message();
    for (auto& f : *frames) got.push_back(std::move(f));
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], (Frame{FrameType::kStdout, 2, "abcdef"}));
  EXPECT_EQ(got[1].type, FrameType::kExit);
  EXPECT_FALSE(p.channel.closed());
}

TEST(AgentChannel, OversizeFrameIsAProtocolError) {
  Pair p = make_pair();
  std::string header;
  agent::detail::put_le32(header, agent::kMaxPayloadSize + 1);
  header.push_back(static_cast<char>(FrameType::kStdout));
  agent::detail::put_le32(header, 0);
  guest_write(p, header);
  auto frames = p.channel.on_readable();
  ASSERT_FALSE(frames.ok());
  EXPECT_EQ(frames.status().code(), Errc::protocol);
  EXPECT_NE(frames.status().message().find("exceeds the limit"), std::string::npos);
  EXPECT_FALSE(p.channel.on_readable().ok());  // stays broken
}

TEST(AgentChannel, UnknownTypeIsAProtocolError) {
  Pair p = make_pair();
  guest_write(p, std::string("\0\0\0\0\x7e\0\0\0\0", 9));
  auto frames = p.channel.on_readable();
  ASSERT_FALSE(frames.ok());
  EXPECT_EQ(frames.status().code(), Errc::protocol);
  EXPECT_NE(frames.status().message().find("unknown frame type 0x7e"), std::string::npos);
}

TEST(AgentChannel, HostBoundTypeFromGuestIsAProtocolError) {
  Pair p = make_pair();
  guest_write(p, frame(FrameType::kShutdown, 0, "{}"));
  EXPECT_EQ(p.channel.on_readable().status().code(), Errc::protocol);
}

TEST(AgentChannel, WaitHelloKeepsOtherFramesAndDropsRepeats) {
  Pair p = make_pair();
  guest_write(p, frame(FrameType::kStderr, 0, "early") + hello() + hello() +
                     frame(FrameType::kStdout, 0, "late"));
  auto h = p.channel.wait_hello(1000ms);
  ASSERT_TRUE(h.ok()) << h.status().message();
  EXPECT_EQ(h->kernel, "6.1-test");
  guest_write(p, hello());
  auto rest = p.channel.on_readable();
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 2u);
  EXPECT_EQ((*rest)[0].payload, "early");
  EXPECT_EQ((*rest)[1].payload, "late");
}

TEST(AgentChannel, WaitHelloRejectsOtherProtocolVersions) {
  Pair p = make_pair();
  agent::Hello h;
  h.protocol = agent::kProtocolVersion + 1;
  guest_write(p, frame(FrameType::kHello, 0, h.to_payload()));
  auto r = p.channel.wait_hello(1000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::protocol);
  EXPECT_NE(r.status().message().find("protocol " + std::to_string(agent::kProtocolVersion + 1)),
            std::string::npos);
}

TEST(AgentChannel, WaitHelloTimesOutAndReportsClose) {
  Pair p = make_pair();
  auto r = p.channel.wait_hello(50ms);
  EXPECT_EQ(r.status().code(), Errc::timeout);
  p.guest.reset();
  auto closed = p.channel.wait_hello(1000ms);
  EXPECT_EQ(closed.status().code(), Errc::io);
  EXPECT_TRUE(p.channel.closed());
}

TEST(AgentChannel, SendsFramesTheAgentDecodes) {
  Pair p = make_pair();
  agent::Plan plan;
  plan.process.args = {"/bin/true"};
  ASSERT_TRUE(p.channel.send_plan(plan).ok());
  agent::Process proc;
  proc.args = {"ls"};
  ASSERT_TRUE(p.channel.send_exec(3, proc).ok());
  EXPECT_EQ(p.channel.send_exec(0, proc).code(), Errc::invalid_argument);
  ASSERT_TRUE(p.channel.send_stdin(3, "in").ok());
  ASSERT_TRUE(p.channel.send_stdin_eof(3).ok());
  ASSERT_TRUE(p.channel.send_signal(3, 15).ok());
  ASSERT_TRUE(p.channel.send_shutdown(1500ms).ok());
  EXPECT_FALSE(p.channel.wants_write());

  char buf[65536];
  const ssize_t n = ::read(p.guest.get(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  agent::FrameDecoder d(agent::Direction::kHostToGuest);
  std::vector<Frame> frames;
  ASSERT_TRUE(d.feed(std::string_view(buf, static_cast<size_t>(n)), frames)) << d.error();
  ASSERT_EQ(frames.size(), 6u);
  std::string err;
  auto parsed = agent::parse_plan(frames[0].payload, &err);
  ASSERT_TRUE(parsed) << err;
  EXPECT_EQ(*parsed, plan);
  EXPECT_EQ(frames[1].session, 3u);
  EXPECT_EQ(agent::parse_process(frames[1].payload, &err)->args, proc.args);
  EXPECT_EQ(frames[2], (Frame{FrameType::kStdin, 3, "in"}));
  EXPECT_EQ(frames[3], (Frame{FrameType::kStdinEof, 3, ""}));
  EXPECT_EQ(agent::parse_signal_request(frames[4].payload, &err)->signal, 15);
  EXPECT_EQ(agent::parse_shutdown_request(frames[5].payload, &err)->timeout_ms, 1500u);
}

TEST(AgentChannel, RefusesArgumentsThatAreNotUtf8) {
  Pair p = make_pair();
  agent::Process proc;
  proc.args = {"echo", "\xff"};
  const Status s = p.channel.send_exec(1, proc);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find("valid UTF-8"), std::string::npos);
  EXPECT_FALSE(p.channel.wants_write());
}

TEST(AgentChannel, QueuesWhenTheSocketIsFullAndSplitsLargeStdin) {
  Pair p = make_pair();
  const std::string big(3 * agent::kMaxPayloadSize + 5, 'x');
  ASSERT_TRUE(p.channel.send_stdin(1, big).ok());
  EXPECT_TRUE(p.channel.wants_write());
  std::string received;
  std::thread reader([&] {
    char buf[65536];
    const std::size_t want = big.size() + 4 * agent::kFrameHeaderSize;
    while (received.size() < want) {
      const ssize_t n = ::read(p.guest.get(), buf, sizeof buf);
      if (n <= 0) break;
      received.append(buf, static_cast<size_t>(n));
    }
  });
  ASSERT_TRUE(p.channel.flush(5000ms).ok());
  reader.join();
  agent::FrameDecoder d(agent::Direction::kHostToGuest);
  std::vector<Frame> frames;
  ASSERT_TRUE(d.feed(received, frames));
  ASSERT_EQ(frames.size(), 4u);
  std::string joined;
  for (auto& f : frames) joined += f.payload;
  EXPECT_EQ(joined, big);
  EXPECT_EQ(p.channel.send(FrameType::kPlan, 0, big).code(), Errc::invalid_argument);
}

TEST(AgentChannel, ReportsCloseAfterTheLastFrames) {
  Pair p = make_pair();
  guest_write(p, frame(FrameType::kExit, 0, R"({"code":0,"signal":0})"));
  p.guest.reset();
  auto frames = p.channel.on_readable();
  ASSERT_TRUE(frames.ok());
  EXPECT_EQ(frames->size(), 1u);
  EXPECT_TRUE(p.channel.closed());
  EXPECT_EQ(p.channel.next_frame(100ms).status().code(), Errc::io);
  EXPECT_EQ(p.channel.send_signal(0, 9).code(), Errc::io);
}

TEST(AgentChannel, AttachMatchesTheGenerationAndChecksTheBootId) {
  Pair p = make_pair();
  const std::string boot = std::string(31, 'a') + "b";
  // The agent's answers to an older attach and to this one, plus a frame for later.
  guest_write(p, frame(FrameType::kAttached, 0, agent::Attached{1, boot, {}, 5}.to_payload()));
  guest_write(p, frame(FrameType::kStdout, 0, "later"));
  guest_write(p, frame(FrameType::kAttached, 0, agent::Attached{2, boot, {0}, 6}.to_payload()));
  auto attached = p.channel.attach(2, boot, 1000ms);
  ASSERT_TRUE(attached.ok()) << attached.status().message();
  EXPECT_EQ(attached->sessions, std::vector<std::uint32_t>{0});
  auto kept = p.channel.next_frame(100ms);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->type, FrameType::kStdout);

  // What the host sent: one ATTACH with 32 bytes of entropy and a current wall clock.
  char buf[4096];
  const ssize_t n = ::read(p.guest.get(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  agent::FrameDecoder d(agent::Direction::kHostToGuest);
  std::vector<Frame> sent;
  ASSERT_TRUE(d.feed(std::string_view(buf, static_cast<std::size_t>(n)), sent));
  ASSERT_EQ(sent.size(), 1u);
  std::string why;
  auto req = agent::parse_attach_request(sent[0].payload, &why);
  ASSERT_TRUE(req) << why;
  EXPECT_EQ(req->generation, 2u);
  EXPECT_EQ(req->entropy_hex.size(), 2 * agent::kMinAttachEntropy);
  EXPECT_GT(req->wall_time_ns, 1600000000LL * 1000000000LL);
}

TEST(AgentChannel, AttachRefusesAGuestThatBootedAfresh) {
  Pair p = make_pair();
  guest_write(p, frame(FrameType::kAttached, 0,
                       agent::Attached{1, std::string(32, 'c'), {}, 1}.to_payload()));
  auto refused = p.channel.attach(1, std::string(32, 'd'), 1000ms);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Errc::protocol);
  EXPECT_NE(refused.status().message().find("booted afresh"), std::string::npos);
}

}  // namespace
}  // namespace fcvm
