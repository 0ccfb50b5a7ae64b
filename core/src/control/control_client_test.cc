#include "control/control_client.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "fcvm/temp_dir.h"

namespace fcvm::control {
namespace {

// A real unix socket server end, driven by the test.
class ControlClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = TempDir::create(std::filesystem::temp_directory_path(), "fcvm-control-client-");
    ASSERT_TRUE(tmp.ok()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    path_ = tmp_.path() / "control.sock";
    listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener_.get(), 4), 0);
  }

  // Connects a client and accepts its connection.
  ControlClient connect_pair() {
    auto client = ControlClient::connect(path_);
    EXPECT_TRUE(client.ok()) << client.status().message();
    server_.reset(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    return std::move(*client);
  }

  void server_write(const std::string& bytes) {
    ASSERT_EQ(::write(server_.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

  // Everything the client sent, once it has closed its end.
  std::string server_read_all() {
    std::string in;
    char buf[4096];
    for (ssize_t n; (n = ::read(server_.get(), buf, sizeof buf)) > 0;) in.append(buf, static_cast<size_t>(n));
    return in;
  }

  TempDir tmp_;
  std::filesystem::path path_;
  UniqueFd listener_, server_;
};

TEST_F(ControlClientTest, NothingListeningIsUnavailableNamingTheSocket) {
  auto client = ControlClient::connect(tmp_.path() / "missing.sock");
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), Errc::unavailable);
  EXPECT_NE(client.status().message().find("missing.sock"), std::string::npos) << client.status().message();
}

TEST_F(ControlClientTest, RequestGoesOutFramedAndTheReplyComesBack) {
  {
    auto client = connect_pair();
    ASSERT_TRUE(client.send_request(StopRequest{250}).ok());
    std::string reply;
    ASSERT_TRUE(append_message(reply, MessageType::kStdout, "ignored by wait_reply").ok());
    ASSERT_TRUE(append_message(reply, MessageType::kReply, to_payload(Reply{"busy"})).ok());
    server_write(reply);
    auto got = client.wait_reply(std::chrono::seconds(30));
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_EQ(got->error, "busy");
  }

  MessageDecoder decoder(Sender::client);
  std::vector<Message> sent;
  ASSERT_TRUE(decoder.feed(server_read_all(), sent).ok());
  ASSERT_EQ(sent.size(), 1u);
  auto request = parse_request(sent[0].payload);
  ASSERT_TRUE(request.ok()) << request.status().message();
  EXPECT_EQ(std::get<StopRequest>(*request).timeout_ms, 250u);
}

TEST_F(ControlClientTest, ServerClosingWithoutAReplyIsAnError) {
  auto client = connect_pair();
  server_.reset();
  auto got = client.wait_reply(std::chrono::seconds(30));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Errc::io);
  EXPECT_TRUE(client.closed());
}

TEST_F(ControlClientTest, SilentServerTimesOut) {
  auto client = connect_pair();
  auto got = client.wait_reply(std::chrono::milliseconds(50));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Errc::timeout);
}

TEST_F(ControlClientTest, MalformedServerBytesAreAProtocolError) {
  auto client = connect_pair();
  server_write(std::string("\1\0\0\0\x01x", 6));  // REQUEST is a client's message
  auto got = client.wait_reply(std::chrono::seconds(30));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Errc::protocol);
}

}  // namespace
}  // namespace fcvm::control
