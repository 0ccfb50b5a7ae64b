#include "qmp_client.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "fcvm/child_process.h"
#include "fcvm/temp_dir.h"

namespace fcvm::qemu {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// A QEMU with no guest (-S: nothing runs), just its QMP socket.
class QmpClientQemuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create("fcvm-qmp-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    tmp_dir_ = std::move(*made);
    dir_ = tmp_dir_.path();
    socket_ = dir_ / "qmp.sock";
    SpawnOptions opts;
    opts.argv = {"qemu-system-x86_64", "-M", "microvm", "-accel", "tcg", "-nodefaults",
                 "-no-user-config", "-display", "none", "-S", "-chardev",
                 "socket,id=qmp,path=" + socket_.string() + ",server=on,wait=off", "-mon",
                 "chardev=qmp,mode=control"};
    auto child = ChildProcess::spawn(opts);
    if (!child.ok()) GTEST_SKIP() << "cannot start QEMU: " << child.status().message();
    qemu_ = std::move(*child);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      auto c = QmpClient::connect(socket_, 5s);
      if (c.ok()) {
        client_ = std::move(*c);
        break;
      }
      ASSERT_EQ(c.status().code(), Errc::unavailable) << c.status().message();
      ASSERT_FALSE(qemu_.try_wait().has_value()) << "QEMU exited early";
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no QMP socket";
      std::this_thread::sleep_for(5ms);
    }
  }
  void TearDown() override {
    qemu_.kill();
  }

  TempDir tmp_dir_;
  std::filesystem::path dir_, socket_;
  ChildProcess qemu_;
  QmpClient client_;
};

TEST_F(QmpClientQemuTest, GreetsAndAnswers) {
  EXPECT_TRUE(client_.connected());
  EXPECT_GE(client_.greeting()["version"]["qemu"]["major"].get<int>(), 7);
  auto status = client_.execute("query-status");
  ASSERT_TRUE(status.ok()) << status.status().message();
  EXPECT_EQ((*status)["status"], "prelaunch");
  EXPECT_EQ((*status)["running"], false);
}

TEST_F(QmpClientQemuTest, ErrorsCarryQemusDescription) {
  auto missing = client_.execute("no-such-command");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Errc::unavailable);
  EXPECT_NE(missing.status().message().find("no-such-command"), std::string::npos);
  auto bad = client_.execute("stop", {{"bogus", 1}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bogus"), std::string::npos) << bad.status().message();
  // The connection is still usable afterwards.
  EXPECT_TRUE(client_.execute("query-status").ok());
}

TEST_F(QmpClientQemuTest, QueuesEventsWhileWaitingForReplies) {
  ASSERT_TRUE(client_.execute("cont").ok());
  ASSERT_TRUE(client_.execute("stop").ok());
  ASSERT_TRUE(client_.execute("query-status").ok());
  std::vector<std::string> names;
  for (const auto& e : client_.take_events()) names.push_back(e["event"]);
  EXPECT_NE(std::find(names.begin(), names.end(), "RESUME"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "STOP"), names.end());
  EXPECT_TRUE(client_.take_events().empty());
}

TEST_F(QmpClientQemuTest, PassesDescriptors) {
  const int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto got = client_.execute("getfd", {{"fdname", "testfd"}}, 5s, fd);
  ::close(fd);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_TRUE(client_.execute("closefd", {{"fdname", "testfd"}}).ok());
  EXPECT_FALSE(client_.execute("closefd", {{"fdname", "testfd"}}).ok());
  // getfd without a descriptor attached is QEMU's error, not a hang.
  EXPECT_FALSE(client_.execute("getfd", {{"fdname", "nofd"}}).ok());
}

TEST_F(QmpClientQemuTest, LostConnectionIsAnIoError) {
  qemu_.kill();
  auto r = client_.execute("query-status", nullptr, 2s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::io) << r.status().message();
  EXPECT_FALSE(client_.connected());
}

// "At once" without a timed bound: were connect to wait for the socket, this test would
// outlive ctest's timeout and fail there.
TEST(QmpClient, ConnectWithoutListenerFailsAtOnce) {
  auto c = QmpClient::connect("/tmp/fcvm-no-such-dir/qmp.sock", std::chrono::hours(24));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Errc::unavailable);
}

// A scripted peer: greets, accepts capabilities, then leaves the first command unanswered
// until the second one arrives, and answers both (stale first).
TEST(QmpClient, TimedOutReplyIsNotTakenForTheNextOne) {
  auto dir = TempDir::create("fcvm-qmpfake-test-");
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  const std::filesystem::path path = dir->path() / "s";
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 1), 0);

  std::thread peer([listener] {
    const int s = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    auto send = [s](const json& j) {
      const std::string line = j.dump() + "\r\n";
      (void)!::write(s, line.data(), line.size());
    };
    std::string in;
    auto next = [s, &in]() -> json {
      for (;;) {
        auto nl = in.find('\n');
        if (nl != std::string::npos) {
          json j = json::parse(in.substr(0, nl));
          in.erase(0, nl + 1);
          return j;
        }
        char buf[4096];
        ssize_t n = ::read(s, buf, sizeof buf);
        if (n <= 0) return json();
        in.append(buf, static_cast<size_t>(n));
      }
    };
    send({{"QMP", {{"version", {{"qemu", {{"major", 9}}}}}, {"capabilities", json::array()}}}});
    json caps = next();
    send({{"return", json::object()}, {"id", caps["id"]}});
    json first = next();
    json second = next();
    send({{"event", "STOP"}, {"timestamp", {{"seconds", 1}, {"microseconds", 0}}}});
    send({{"return", {{"which", "first"}}}, {"id", first["id"]}});
    send({{"return", {{"which", "second"}}}, {"id", second["id"]}});
    next();  // until the client hangs up
    ::close(s);
  });

  {
    auto c = QmpClient::connect(path, 5s);
    ASSERT_TRUE(c.ok()) << c.status().message();
    auto first = c->execute("query-status", nullptr, 100ms);
    ASSERT_FALSE(first.ok());
    EXPECT_EQ(first.status().code(), Errc::timeout);
    auto second = c->execute("query-status", nullptr, 5s);
    ASSERT_TRUE(second.ok()) << second.status().message();
    EXPECT_EQ((*second)["which"], "second");
    auto events = c->take_events();
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0]["event"], "STOP");
  }
  peer.join();
  ::close(listener);
}

}  // namespace
}  // namespace fcvm::qemu
