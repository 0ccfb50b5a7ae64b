#include "fcvm/unix_socket.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <future>

#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A unix socket bound at `path`; listening only once listen() is called, so connects are
// refused until then.
UniqueFd bind_socket(const std::filesystem::path& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

class UnixSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-unix-socket-test-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
  }
  std::filesystem::path socket_path() const { return dir_.path() / "vmm.sock"; }
  TempDir dir_;
};

TEST_F(UnixSocketTest, TimesOutNamingTheSocketWhenNothingListens) {
  const auto deadline = Clock::now() + 50ms;
  auto fd = connect_unix_socket(socket_path(), deadline);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), Errc::timeout);
  EXPECT_NE(fd.status().message().find(socket_path().string()), std::string::npos);
  EXPECT_GE(Clock::now(), deadline);
}

TEST_F(UnixSocketTest, ConnectsToAListeningSocket) {
  UniqueFd server = bind_socket(socket_path());
  ASSERT_EQ(::listen(server.get(), 1), 0);
  auto fd = connect_unix_socket(socket_path(), Clock::now() + 10s);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  UniqueFd accepted(::accept(server.get(), nullptr, nullptr));
  ASSERT_TRUE(accepted.valid());
  ASSERT_EQ(::write(fd->get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(accepted.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

// A refused connect is retried, not reported: the call is still waiting when the give-up
// fd fires, and then reports unavailable.
TEST_F(UnixSocketTest, KeepsRetryingARefusingSocketUntilGivenUp) {
  UniqueFd server = bind_socket(socket_path());  // bound, not listening: ECONNREFUSED
  UniqueFd give_up(::eventfd(0, EFD_CLOEXEC));
  auto pending = std::async(std::launch::async, [&] {
    return connect_unix_socket(socket_path(), Clock::now() + 600s, give_up.get());
  });
  const std::uint64_t one = 1;
  ASSERT_EQ(::write(give_up.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
  auto fd = pending.get();
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), Errc::unavailable);
}

TEST_F(UnixSocketTest, ConnectsOnceTheServerStartsListening) {
  UniqueFd server = bind_socket(socket_path());
  auto pending = std::async(std::launch::async, [&] {
    return connect_unix_socket(socket_path(), Clock::now() + 600s);
  });
  ASSERT_EQ(::listen(server.get(), 1), 0);
  auto fd = pending.get();
  EXPECT_TRUE(fd.ok()) << fd.status().message();
}

TEST_F(UnixSocketTest, RefusesAPathLongerThanSunPath) {
  auto fd = connect_unix_socket("/" + std::string(200, 'a'), Clock::now());
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), Errc::invalid_argument);
}

TEST(SendWithFd, TheBytesArriveWithTheDescriptorAttached) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd sender(pair[0]), receiver(pair[1]);
  UniqueFd passed(::eventfd(7, EFD_CLOEXEC));
  ASSERT_TRUE(passed.valid());

  ASSERT_EQ(send_with_fd(sender.get(), "hello", passed.get()), 5);
  ASSERT_EQ(send_with_fd(sender.get(), "!", -1), 1);

  char buf[16] = {};
  iovec iov{buf, sizeof buf};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(receiver.get(), &msg, MSG_CMSG_CLOEXEC);
  ASSERT_GE(n, 5);
  EXPECT_EQ(std::string(buf, 5), "hello");
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->cmsg_type, SCM_RIGHTS);
  int got = -1;
  std::memcpy(&got, CMSG_DATA(c), sizeof got);
  UniqueFd received(got);
  // The received descriptor is the same eventfd: its counter reads back.
  std::uint64_t value = 0;
  ASSERT_EQ(::read(received.get(), &value, sizeof value), static_cast<ssize_t>(sizeof value));
  EXPECT_EQ(value, 7u);
}

TEST(SendWithFd, AFailedSendReturnsMinusOneWithErrno) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd sender(pair[0]);
  ::close(pair[1]);
  errno = 0;
  EXPECT_EQ(send_with_fd(sender.get(), "x", -1), -1);
  EXPECT_EQ(errno, EPIPE);  // and no SIGPIPE: MSG_NOSIGNAL
}

}  // namespace
}  // namespace fcvm
