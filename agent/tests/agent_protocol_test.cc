#include "fcvm/agent_protocol.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace fcvm::agent {
namespace {

std::string header(std::uint32_t length, std::uint8_t type, std::uint32_t session) {
  std::string h;
  detail::put_le32(h, length);
  h.push_back(static_cast<char>(type));
  detail::put_le32(h, session);
  return h;
}

TEST(FrameCodec, EncodesLittleEndianHeader) {
  std::string out;
  ASSERT_TRUE(append_frame(out, FrameType::kStdout, 0x01020304, "hi"));
  const std::string expected = std::string("\x02\x00\x00\x00", 4) + "\x03" +
                               std::string("\x04\x03\x02\x01", 4) + "hi";
  EXPECT_EQ(out, expected);
}

TEST(FrameCodec, RoundTripsSeveralFramesInOneRead) {
  std::string wire;
  append_frame(wire, FrameType::kHello, 0, "{}");
  append_frame(wire, FrameType::kStdout, 7, std::string("a\0b", 3));
  append_frame(wire, FrameType::kExit, 7, "");
  FrameDecoder d(Direction::kGuestToHost);
  std::vector<Frame> frames;
  ASSERT_TRUE(d.feed(wire, frames));
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0], (Frame{FrameType::kHello, 0, "{}"}));
  EXPECT_EQ(frames[1], (Frame{FrameType::kStdout, 7, std::string("a\0b", 3)}));
  EXPECT_EQ(frames[2], (Frame{FrameType::kExit, 7, ""}));
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameCodec, DecodesAcrossArbitrarySplits) {
  std::string wire;
  append_frame(wire, FrameType::kPlan, 0, std::string(1000, 'p'));
  append_frame(wire, FrameType::kStdin, 3, "xyz");
  append_frame(wire, FrameType::kStdinEof, 3, "");
  for (std::size_t step : {1u, 2u, 5u, 9u, 10u, 333u}) {
    FrameDecoder d(Direction::kHostToGuest);
    std::vector<Frame> frames;
    for (std::size_t i = 0; i < wire.size(); i += step) {
      ASSERT_TRUE(d.feed(std::string_view(wire).substr(i, step), frames)) << d.error();
    }
    ASSERT_EQ(frames.size(), 3u) << "step " << step;
    EXPECT_EQ(frames[0].payload.size(), 1000u);
    EXPECT_EQ(frames[1].payload, "xyz");
    EXPECT_EQ(frames[2].type, FrameType::kStdinEof);
  }
}

TEST(FrameCodec, WaitsForTheRestOfAFrame) {
  std::string wire;
  append_frame(wire, FrameType::kStderr, 1, "0123456789");
  FrameDecoder d(Direction::kGuestToHost);
  std::vector<Frame> frames;
  ASSERT_TRUE(d.feed(std::string_view(wire).substr(0, 12), frames));
  EXPECT_TRUE(frames.empty());
  EXPECT_EQ(d.buffered(), 12u);
  ASSERT_TRUE(d.feed(std::string_view(wire).substr(12), frames));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].payload, "0123456789");
}

TEST(FrameCodec, RejectsOversizePayloadFromTheHeaderAlone) {
  FrameDecoder d(Direction::kGuestToHost);
  std::vector<Frame> frames;
  EXPECT_FALSE(d.feed(header(kMaxPayloadSize + 1, 0x03, 0), frames));
  EXPECT_TRUE(d.failed());
  EXPECT_NE(d.error().find("exceeds the limit"), std::string::npos) << d.error();
  // Failed for good: even a valid frame is refused afterwards.
  std::string ok;
  append_frame(ok, FrameType::kStdout, 0, "x");
  EXPECT_FALSE(d.feed(ok, frames));
  EXPECT_TRUE(frames.empty());
}

TEST(FrameCodec, AcceptsPayloadOfExactlyTheLimit) {
  std::string wire;
  ASSERT_TRUE(append_frame(wire, FrameType::kStdout, 0, std::string(kMaxPayloadSize, 'x')));
  FrameDecoder d(Direction::kGuestToHost);
  std::vector<Frame> frames;
  ASSERT_TRUE(d.feed(wire, frames));
  ASSERT_EQ(frames.size(), 1u);
  std::string too_big;
  EXPECT_FALSE(append_frame(too_big, FrameType::kStdout, 0, std::string(kMaxPayloadSize + 1, 'x')));
  EXPECT_TRUE(too_big.empty());
}

TEST(FrameCodec, RejectsUnknownType) {
  FrameDecoder d(Direction::kGuestToHost);
  std::vector<Frame> frames;
  EXPECT_FALSE(d.feed(header(0, 0x42, 0), frames));
  EXPECT_EQ(d.error(), "unknown frame type 0x42");
}

TEST(FrameCodec, RejectsFramesTravellingTheWrongWay) {
  std::string wire;
  append_frame(wire, FrameType::kPlan, 0, "{}");
  FrameDecoder host(Direction::kGuestToHost);
  std::vector<Frame> frames;
  EXPECT_FALSE(host.feed(wire, frames));
  EXPECT_NE(host.error().find("PLAN"), std::string::npos);
}

TEST(FrameCodec, KeepsFramesBeforeABadHeader) {
  std::string wire;
  append_frame(wire, FrameType::kStdout, 0, "good");
  wire += header(0, 0xff, 0);
  FrameDecoder d(Direction::kGuestToHost);
  std::vector<Frame> frames;
  EXPECT_FALSE(d.feed(wire, frames));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].payload, "good");
}

TEST(Payloads, RoundTrip) {
  Hello h;
  h.kernel = "6.1.0";
  h.uptime_ms = 612;
  std::string err;
  auto h2 = parse_hello(h.to_payload(), &err);
  ASSERT_TRUE(h2) << err;
  EXPECT_EQ(h2->agent, "fc-agent");
  EXPECT_EQ(h2->protocol, kProtocolVersion);
  EXPECT_EQ(h2->kernel, "6.1.0");
  EXPECT_EQ(h2->uptime_ms, 612u);

  auto e = parse_exit(Exit::killed(9).to_payload(), &err);
  ASSERT_TRUE(e) << err;
  EXPECT_EQ(*e, (Exit{137, 9}));
  EXPECT_EQ(parse_started(Started{42}.to_payload(), &err)->pid, 42);
  EXPECT_EQ(parse_error_message(ErrorMessage{"boom"}.to_payload(), &err)->message, "boom");
  EXPECT_EQ(parse_signal_request(SignalRequest{15}.to_payload(), &err)->signal, 15);
  EXPECT_EQ(parse_shutdown_request(ShutdownRequest{500}.to_payload(), &err)->timeout_ms, 500u);
  EXPECT_EQ(parse_shutdown_request("", &err)->timeout_ms, 2000u);
  EXPECT_EQ(parse_credit(Credit{65536}.to_payload(), &err)->bytes, 65536u);
}

TEST(Payloads, CreditFramesTravelTheirOwnWay) {
  std::string wire;
  append_frame(wire, FrameType::kStdinCredit, 3, Credit{10}.to_payload());
  FrameDecoder host(Direction::kGuestToHost);
  std::vector<Frame> frames;
  ASSERT_TRUE(host.feed(wire, frames)) << host.error();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frame_type_name(frames[0].type), "STDIN_CREDIT");
  append_frame(wire, FrameType::kCredit, 3, Credit{10}.to_payload());
  FrameDecoder guest(Direction::kHostToGuest);
  EXPECT_FALSE(guest.feed(wire, frames));  // STDIN_CREDIT first: wrong way for the guest
  std::string err;
  EXPECT_FALSE(parse_credit(R"({"bytes":0})", &err));
  EXPECT_EQ(err, "CREDIT.bytes: out of range");
  EXPECT_FALSE(parse_credit(R"({"bytes":1073741825})", &err));
  EXPECT_FALSE(parse_credit(R"({"bytes":1,"more":2})", &err));
  EXPECT_EQ(err, "CREDIT.more: unknown field");
}

TEST(Payloads, EncodingNeverThrowsOnInvalidUtf8) {
  const std::string payload = ErrorMessage{"cannot run '\xff'"}.to_payload();
  std::string err;
  auto m = parse_error_message(payload, &err);
  ASSERT_TRUE(m) << err;
  EXPECT_EQ(m->message, "cannot run '\xef\xbf\xbd'");  // U+FFFD
}

TEST(Payloads, GuestMessagesIgnoreUnknownKeysHostMessagesDoNot) {
  std::string err;
  EXPECT_TRUE(parse_exit(R"({"code":1,"signal":0,"core_dumped":false})", &err));
  EXPECT_FALSE(parse_signal_request(R"({"signal":15,"pid":3})", &err));
  EXPECT_EQ(err, "SIGNAL.pid: unknown field");
}

TEST(Payloads, RejectsMalformed) {
  std::string err;
  EXPECT_FALSE(parse_exit("not json", &err));
  EXPECT_EQ(err, "EXIT: payload is not valid JSON");
  EXPECT_FALSE(parse_exit("[]", &err));
  EXPECT_FALSE(parse_exit(R"({"code":"1"})", &err));
  EXPECT_EQ(err, "EXIT.code: expected an integer");
  EXPECT_FALSE(parse_signal_request(R"({"signal":0})", &err));
  EXPECT_EQ(err, "SIGNAL.signal: out of range");
  EXPECT_FALSE(parse_signal_request(R"({"signal":99})", &err));
  EXPECT_FALSE(parse_shutdown_request(R"({"timeout_ms":-1})", &err));
  EXPECT_FALSE(parse_shutdown_request(R"({"signal":0})", &err));
  EXPECT_EQ(err, "SHUTDOWN.signal: out of range");
  EXPECT_EQ(parse_shutdown_request(R"({"timeout_ms":5})", &err)->signal, 15);  // SIGTERM unless told
  EXPECT_EQ(parse_shutdown_request(ShutdownRequest{7, 2}.to_payload(), &err)->signal, 2);
  EXPECT_FALSE(parse_hello(R"({"protocol":1})", &err));
  EXPECT_EQ(err, "HELLO.agent: expected a string");
}

TEST(Payloads, AttachRoundTripAndChecks) {
  AttachRequest req{7, 1700000000123456789, std::string(64, 'a')};
  std::string err;
  auto parsed = parse_attach_request(req.to_payload(), &err);
  ASSERT_TRUE(parsed) << err;
  EXPECT_EQ(parsed->generation, 7u);
  EXPECT_EQ(parsed->wall_time_ns, 1700000000123456789);
  EXPECT_EQ(parsed->entropy_hex, std::string(64, 'a'));

  EXPECT_FALSE(parse_attach_request(AttachRequest{1, 1, std::string(62, 'a')}.to_payload(), &err))
      << "fewer than 32 bytes of entropy";
  EXPECT_NE(err.find("ATTACH.entropy"), std::string::npos);
  EXPECT_FALSE(parse_attach_request(AttachRequest{1, 1, std::string(64, 'G')}.to_payload(), &err));
  EXPECT_FALSE(parse_attach_request(AttachRequest{1, 0, std::string(64, 'a')}.to_payload(), &err));
  EXPECT_FALSE(parse_attach_request(R"({"generation":1,"wall_time_ns":5,"entropy":")" +
                                        std::string(64, 'a') + R"(","extra":1})",
                                    &err));
  EXPECT_EQ(err, "ATTACH.extra: unknown field");

  Attached a{7, std::string(32, 'f'), {0, 3}, 1234};
  auto back = parse_attached(a.to_payload(), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(back->generation, 7u);
  EXPECT_EQ(back->boot_id, std::string(32, 'f'));
  EXPECT_EQ(back->sessions, (std::vector<std::uint32_t>{0, 3}));
  EXPECT_EQ(back->uptime_ms, 1234u);
  EXPECT_FALSE(parse_attached(Attached{1, "short", {}, 0}.to_payload(), &err));
  EXPECT_EQ(err, "ATTACHED.boot_id: expected 32 lowercase hex digits");
  EXPECT_FALSE(parse_attached(R"({"generation":1,"boot_id":")" + std::string(32, 'f') +
                                  R"(","sessions":[-1]})",
                              &err));
}

TEST(FrameCodec, AttachFramesTravelTheirOwnWay) {
  std::string to_guest, to_host;
  append_frame(to_guest, FrameType::kAttach, 0, "{}");
  append_frame(to_host, FrameType::kAttached, 0, "{}");
  std::vector<Frame> frames;
  FrameDecoder guest(Direction::kHostToGuest), host(Direction::kGuestToHost);
  EXPECT_TRUE(guest.feed(to_guest, frames));
  EXPECT_TRUE(host.feed(to_host, frames));
  EXPECT_EQ(frames.size(), 2u);
  EXPECT_EQ(frame_type_name(FrameType::kAttach), "ATTACH");
  EXPECT_EQ(frame_type_name(FrameType::kAttached), "ATTACHED");
}

TEST(Payloads, GoCarriesAnOptionalValidHostname) {
  std::string err;
  auto bare = parse_go_request(GoRequest{}.to_payload(), &err);
  ASSERT_TRUE(bare) << err;
  EXPECT_FALSE(bare->hostname);
  auto named = parse_go_request(GoRequest{"web-2.local"}.to_payload(), &err);
  ASSERT_TRUE(named) << err;
  EXPECT_EQ(named->hostname, "web-2.local");
  for (const char* bad : {R"({"hostname":""})", R"({"hostname":"a b"})", R"({"hostname":7})",
                          R"({"name":"x"})", "[]", "nope"}) {
    EXPECT_FALSE(parse_go_request(bad, &err)) << bad;
  }
  EXPECT_EQ(direction_of(FrameType::kGo), Direction::kHostToGuest);
  EXPECT_EQ(direction_of(FrameType::kReady), Direction::kGuestToHost);
  EXPECT_TRUE(is_known_frame_type(0x09));
  EXPECT_TRUE(is_known_frame_type(0x89));
}

TEST(Payloads, ResizeTravelsHostToGuestAndIsChecked) {
  std::string wire;
  append_frame(wire, FrameType::kResize, 4, WindowSize{50, 132}.to_payload());
  FrameDecoder guest(Direction::kHostToGuest);
  std::vector<Frame> frames;
  ASSERT_TRUE(guest.feed(wire, frames)) << guest.error();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].session, 4u);
  std::string err;
  auto size = parse_window_size(frames[0].payload, &err);
  ASSERT_TRUE(size) << err;
  EXPECT_EQ(*size, (WindowSize{50, 132}));
  FrameDecoder host(Direction::kGuestToHost);
  EXPECT_FALSE(host.feed(wire, frames));
  EXPECT_FALSE(parse_window_size(R"({"rows":-1,"cols":80})", &err));
  EXPECT_FALSE(parse_window_size(R"({"rows":1})", &err));
  EXPECT_EQ(err, "RESIZE.cols: missing");
  EXPECT_TRUE(is_known_frame_type(0x8a));
}

TEST(Payloads, HelloCarriesTheBootId) {
  Hello h;
  h.boot_id = std::string(32, 'e');
  std::string err;
  auto back = parse_hello(h.to_payload(), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(back->boot_id, h.boot_id);
}

}  // namespace
}  // namespace fcvm::agent
