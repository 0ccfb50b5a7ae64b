#include "control/control_protocol.h"

#include <gtest/gtest.h>

namespace fcvm::control {
namespace {

std::vector<Message> decode_all(Sender from, const std::string& bytes, Status* st = nullptr) {
  MessageDecoder d(from);
  std::vector<Message> out;
  Status s = d.feed(bytes, out);
  if (st) *st = s;
  return out;
}

TEST(ControlProtocol, ExecRequestRoundTrips) {
  ExecRequest e;
  e.args = {"sh", "-c", "echo hi"};
  e.env = {"A=1"};
  e.workdir = "/tmp";
  e.user = "1000:1000";
  e.stdin = true;
  e.tty = TerminalSize{40, 120};
  auto parsed = parse_request(to_payload(Request{e}));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(std::get<ExecRequest>(*parsed), e);

  ExecRequest minimal;
  minimal.args = {"true"};
  parsed = parse_request(to_payload(Request{minimal}));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(std::get<ExecRequest>(*parsed), minimal);
}

TEST(ControlProtocol, TerminalSizesAreChecked) {
  auto size = parse_terminal_size(to_payload(TerminalSize{50, 132}));
  ASSERT_TRUE(size.ok()) << size.status().message();
  EXPECT_EQ(*size, (TerminalSize{50, 132}));
  EXPECT_EQ(parse_terminal_size(R"({"rows":1,"cols":99999})").status().message(),
            "resize: cols must be an integer from 0 to 65535");
  EXPECT_EQ(parse_request(R"({"version":1,"request":"exec","args":["sh"],"tty":{"rows":1}})")
                .status()
                .message(),
            "exec.tty: cols is missing");
  std::string wire;
  ASSERT_TRUE(append_message(wire, MessageType::kResize, to_payload(TerminalSize{})).ok());
  MessageDecoder server(Sender::client);
  std::vector<Message> got;
  ASSERT_TRUE(server.feed(wire, got).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].type, MessageType::kResize);
}

TEST(ControlProtocol, StopRequestRoundTripsAndDefaults) {
  auto parsed = parse_request(to_payload(Request{StopRequest{1500}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(std::get<StopRequest>(*parsed).timeout_ms, 1500u);
  parsed = parse_request(R"({"version":1,"request":"stop"})");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(std::get<StopRequest>(*parsed).timeout_ms, 10000u);
}

TEST(ControlProtocol, PauseResumeAndSnapshotRequestsRoundTrip) {
  for (const Request& r : {Request{PauseRequest{}}, Request{ResumeRequest{}},
                           Request{SnapshotRequest{"web-1", true}},
                           Request{SnapshotRequest{"t", false}}}) {
    auto parsed = parse_request(to_payload(r));
    ASSERT_TRUE(parsed.ok()) << to_payload(r) << ": " << parsed.status().message();
    EXPECT_EQ(*parsed, r) << to_payload(r);
  }
  auto minimal = parse_request(R"({"version":1,"request":"snapshot","tag":"x"})");
  ASSERT_TRUE(minimal.ok()) << minimal.status().message();
  EXPECT_EQ(std::get<SnapshotRequest>(*minimal), (SnapshotRequest{"x", false}));
}

TEST(ControlProtocol, SnapshotRepliesCarryWhatWasTaken) {
  Reply taken;
  taken.snapshot = SnapshotTaken{"web", 42};
  auto parsed = parse_reply(to_payload(taken));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(*parsed, taken);
  EXPECT_FALSE(parse_reply(R"({"version":1,"ok":true,"snapshot":"web"})").ok());
  EXPECT_FALSE(parse_reply(R"({"version":1,"ok":true,"snapshot":{"tag":"web","pause_ms":-1}})").ok());
  EXPECT_FALSE(parse_reply(R"({"version":1,"ok":true,"snapshot":{"pause_ms":1}})").ok());
}

TEST(ControlProtocol, HealthcheckRequestRoundTrips) {
  auto parsed = parse_request(to_payload(Request{HealthcheckRequest{}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_TRUE(std::holds_alternative<HealthcheckRequest>(*parsed));
  EXPECT_EQ(to_payload(Request{HealthcheckRequest{}}), R"({"request":"healthcheck","version":1})");
}

TEST(ControlProtocol, MalformedRequestsAreErrorsNamingTheProblem) {
  struct Case {
    const char* payload;
    const char* names;
  };
  const Case cases[] = {
      {R"({"args":[1]})", "version"},
      {R"({"version":1,"request":"exec","args":[1]})", "args"},
      {R"({"version":1,"request":"exec","args":[]})", "args"},
      {R"({"version":1,"request":"exec"})", "args"},
      {R"({"version":1,"request":"exec","args":["ls"],"cwd":"/"})", "cwd"},
      {R"({"version":1,"request":"exec","args":["ls"],"stdin":"yes"})", "stdin"},
      {R"({"version":1,"request":"exec","args":["ls"],"env":"A=1"})", "env"},
      {R"({"version":2,"request":"stop"})", "version 2"},
      {R"({"version":1,"request":"stop","timeout_ms":-1})", "timeout_ms"},
      {R"({"version":1,"request":"stop","timeout_ms":4294968000})", "timeout_ms"},
      {R"({"version":1,"request":"stop","timeout_ms":1.5})", "timeout_ms"},
      {R"({"version":1,"request":"reboot"})", "reboot"},
      {R"({"version":1,"request":"pause","now":true})", "now"},
      {R"({"version":1,"request":"resume","timeout_ms":1})", "timeout_ms"},
      {R"({"version":1,"request":"snapshot"})", "tag"},
      {R"({"version":1,"request":"snapshot","tag":""})", "tag"},
      {R"({"version":1,"request":"snapshot","tag":5})", "tag"},
      {R"({"version":1,"request":"snapshot","tag":"t","disk_only":1})", "disk_only"},
      {R"({"version":1,"request":"snapshot","tag":"t","boot_id":"x"})", "boot_id"},
      {R"({"version":1,"request":"snapshot","tag":"t","memory":"uffd"})", "memory"},
      {R"({"version":1,"request":"healthcheck","now":true})", "now"},
      {R"({"version":1,"request":7})", "request"},
      {R"([1,2])", "object"},
      {R"(not json)", "JSON"},
      {"", "JSON"},
  };
  for (const auto& c : cases) {
    auto parsed = parse_request(c.payload);
    ASSERT_FALSE(parsed.ok()) << c.payload;
    EXPECT_EQ(parsed.status().code(), Errc::invalid_argument) << c.payload;
    EXPECT_NE(parsed.status().message().find(c.names), std::string::npos)
        << c.payload << " -> " << parsed.status().message();
  }
}

TEST(ControlProtocol, RepliesAndExitReportsRoundTrip) {
  auto ok = parse_reply(to_payload(Reply{}));
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->ok());
  auto bad = parse_reply(to_payload(Reply{"exec: no such file"}));
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->error, "exec: no such file");
  // Text from the guest may be invalid UTF-8; encoding it must not fail.
  auto mangled = parse_reply(to_payload(Reply{std::string("bad \xff byte")}));
  ASSERT_TRUE(mangled.ok());
  EXPECT_FALSE(mangled->ok());
  EXPECT_FALSE(parse_reply(R"({"version":1})").ok());
  EXPECT_FALSE(parse_reply(R"({"version":1,"ok":false})").ok());

  auto exit = parse_exit_report(to_payload(ExitReport{137, 9}));
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, (ExitReport{137, 9}));
  EXPECT_FALSE(parse_exit_report(R"({"code":256})").ok());
  EXPECT_FALSE(parse_exit_report(R"({"signal":1})").ok());
}

TEST(ControlProtocol, DecoderReassemblesMessagesFromAnySplit) {
  std::string bytes;
  ASSERT_TRUE(append_message(bytes, MessageType::kRequest, R"({"x":1})").ok());
  ASSERT_TRUE(append_message(bytes, MessageType::kStdin, std::string("a\0b", 3)).ok());
  ASSERT_TRUE(append_message(bytes, MessageType::kStdinEof, "").ok());
  MessageDecoder d(Sender::client);
  std::vector<Message> out;
  for (char c : bytes) ASSERT_TRUE(d.feed(std::string_view(&c, 1), out).ok());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], (Message{MessageType::kRequest, R"({"x":1})"}));
  EXPECT_EQ(out[1], (Message{MessageType::kStdin, std::string("a\0b", 3)}));
  EXPECT_EQ(out[2], (Message{MessageType::kStdinEof, ""}));
}

TEST(ControlProtocol, LargeStreamsAreSplitAndLargeJsonRefused) {
  std::string bytes;
  ASSERT_TRUE(append_message(bytes, MessageType::kStdout, std::string(kMaxPayload + 10, 'x')).ok());
  auto out = decode_all(Sender::server, bytes);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].payload.size(), kMaxPayload);
  EXPECT_EQ(out[1].payload.size(), 10u);
  std::string json;
  EXPECT_EQ(append_message(json, MessageType::kReply, std::string(kMaxPayload + 1, ' ')).code(),
            Errc::invalid_argument);
  EXPECT_TRUE(json.empty());
}

TEST(ControlProtocol, DecoderFailsForGoodOnABadHeader) {
  Status st;
  // Unknown type.
  decode_all(Sender::client, std::string("\1\0\0\0\x7f" "x", 6), &st);
  EXPECT_EQ(st.code(), Errc::protocol);
  // A server message sent by a client.
  std::string reply;
  ASSERT_TRUE(append_message(reply, MessageType::kReply, "{}").ok());
  decode_all(Sender::client, reply, &st);
  EXPECT_EQ(st.code(), Errc::protocol);
  EXPECT_NE(st.message().find("direction"), std::string::npos) << st.message();
  // Oversize length; the decoder stays failed.
  MessageDecoder d(Sender::client);
  std::vector<Message> out;
  EXPECT_FALSE(d.feed(std::string("\xff\xff\xff\x7f\x01", 5), out).ok());
  std::string fine;
  ASSERT_TRUE(append_message(fine, MessageType::kStdinEof, "").ok());
  EXPECT_FALSE(d.feed(fine, out).ok());
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace fcvm::control
