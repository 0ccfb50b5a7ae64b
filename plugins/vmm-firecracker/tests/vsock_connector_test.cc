// Firecracker's vsock host protocol against a test peer on a unix socket: the peer plays
// Firecracker's side ("CONNECT <port>\n" in, "OK <port>\n" out, or a close while the guest
// does not listen) with scripted replies.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "vsock_connector.h"

namespace fcvm::firecracker {
namespace {

namespace fs = std::filesystem;
using Clock = VsockConnector::Clock;

// Listens on DIR/v.sock; the i-th connection gets replies[i] (the last one repeats). A
// reply is written after the peer has read the CONNECT line, then the peer closes (or,
// for "OK" replies, echoes until the host closes).
class VsockPeer {
 public:
  explicit VsockPeer(std::vector<std::string> replies) : replies_(std::move(replies)) {
    char tmpl[] = "/tmp/fcvm-vsock-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ / "v.sock";
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listener_, 16), 0);
    thread_ = std::thread([this] { run(); });
  }
  ~VsockPeer() {
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
    fs::remove_all(dir_);
  }
  const fs::path& path() const { return path_; }
  int connections() const { return connections_; }
  const std::string& last_request() const { return last_request_; }

 private:
  void run() {
    for (;;) {
      int c = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      const size_t i = static_cast<size_t>(connections_++);
      const std::string reply = replies_[std::min(i, replies_.size() - 1)];
      std::string line;
      char ch = 0;
      while (line.size() < 64 && ::read(c, &ch, 1) == 1) {
        line += ch;
        if (ch == '\n') break;
      }
      last_request_ = line;
      if (!reply.empty()) (void)!::write(c, reply.data(), reply.size());
      if (reply.rfind("OK ", 0) == 0 && reply.find('\n') != std::string::npos) {
        char buf[256];
        for (ssize_t n; (n = ::read(c, buf, sizeof(buf))) > 0;) (void)!::write(c, buf, static_cast<size_t>(n));
      }
      ::close(c);
    }
  }

  std::vector<std::string> replies_;
  fs::path dir_;
  fs::path path_;
  int listener_ = -1;
  std::atomic<int> connections_{0};
  std::string last_request_;
  std::thread thread_;
};

Clock::time_point soon() { return Clock::now() + std::chrono::seconds(20); }

TEST(VsockConnector, ConnectsAndLeavesTheStreamUntouched) {
  // The reply and the guest's first bytes arrive in one write: none may be swallowed.
  VsockPeer peer({"OK 1073741824\nHELLO"});
  auto fd = VsockConnector::connect_once(peer.path(), 1024, soon());
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  char buf[5] = {};
  ASSERT_EQ(::read(fd->get(), buf, 5), 5);
  EXPECT_EQ(std::string(buf, 5), "HELLO");
  ASSERT_EQ(::write(fd->get(), "ping", 4), 4);
  char echo[4] = {};
  ASSERT_EQ(::read(fd->get(), echo, 4), 4);
  EXPECT_EQ(std::string(echo, 4), "ping");
  EXPECT_EQ(peer.last_request(), "CONNECT 1024\n");
}

TEST(VsockConnector, RejectsGarbage) {
  const std::vector<std::string> replies = {"NOPE\n",  "OK\n",   "OK abc\n", "ok 5\n",
                                           "OK 5 6\n", "OK 99999999999\n", std::string(40, 'A')};
  for (const std::string& reply : replies) {
    SCOPED_TRACE(reply);
    VsockPeer peer({reply});
    auto fd = VsockConnector::connect(peer.path(), 1024, soon());
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.status().code(), Errc::protocol) << fd.status().message();
    EXPECT_EQ(peer.connections(), 1);  // garbage is not retried
  }
}

TEST(VsockConnector, EarlyCloseMidReplyIsAProtocolError) {
  VsockPeer peer({"OK 12"});
  auto fd = VsockConnector::connect_once(peer.path(), 1024, soon());
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), Errc::protocol);
  EXPECT_NE(fd.status().message().find("'OK 12'"), std::string::npos) << fd.status().message();
}

TEST(VsockConnector, CloseWithoutReplyMeansNotListeningYet) {
  VsockPeer peer({""});
  auto once = VsockConnector::connect_once(peer.path(), 1024, soon());
  ASSERT_FALSE(once.ok());
  EXPECT_EQ(once.status().code(), Errc::unavailable);
}

TEST(VsockConnector, RetriesUntilTheGuestListens) {
  VsockPeer peer({"", "", "", "OK 7\n"});
  auto fd = VsockConnector::connect(peer.path(), 1024, soon());
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_EQ(peer.connections(), 4);
}

TEST(VsockConnector, GivesUpAtTheDeadline) {
  VsockPeer peer({""});
  auto fd = VsockConnector::connect(peer.path(), 1024, Clock::now() + std::chrono::milliseconds(200));
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), Errc::timeout);
  EXPECT_GE(peer.connections(), 1);
  auto missing = VsockConnector::connect("/nonexistent/v.sock", 1024, Clock::now() + std::chrono::milliseconds(50));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Errc::timeout);
  EXPECT_NE(missing.status().message().find("/nonexistent/v.sock"), std::string::npos);
}

TEST(VsockConnector, StopsWhenTheVmmIsGone) {
  VsockPeer peer({""});
  int asked = 0;
  auto fd = VsockConnector::connect(peer.path(), 1024, soon(), [&] {
    ++asked;
    return error(Errc::unavailable, "Firecracker exited (exit code 1)");
  });
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(fd.status().message(), "Firecracker exited (exit code 1)");
}

}  // namespace
}  // namespace fcvm::firecracker
