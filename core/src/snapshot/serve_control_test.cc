// ServeControlServer against a real unix socket: only a child of the announcer is admitted.
#include "snapshot/serve_control.h"

#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <thread>

#include "fcvm/child_process.h"
#include "fcvm/temp_dir.h"
#include "snapshot/line_socket.h"

namespace fcvm {
namespace {

class ServeControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-serve-control");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
    auto server = ServeControlServer::listen(socket(), [this](pid_t pid) { announced_.push_back(pid); });
    ASSERT_TRUE(server.ok()) << server.status().message();
    server_ = std::move(*server);
  }
  std::filesystem::path socket() const { return dir_.path() / "serve.sock"; }

  // Runs `client` on a thread while the server answers its one request.
  template <class Client>
  void with_server(Client client) {
    std::thread t(client);
    pollfd p{server_->fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, -1), 1);
    server_->serve_one();
    t.join();
  }

  TempDir dir_;
  std::unique_ptr<ServeControlServer> server_;
  std::vector<pid_t> announced_;
};

TEST_F(ServeControlTest, AdmitsAChildOfTheAnnouncer) {
  SpawnOptions o;
  o.argv = {"sleep", "60"};
  auto child = ChildProcess::spawn(o);
  ASSERT_TRUE(child.ok()) << child.status().message();
  Status st = ok_status();
  with_server([&] { st = announce_vmm(socket(), child->pid()); });
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(announced_, std::vector<pid_t>{child->pid()});
}

TEST_F(ServeControlTest, RefusesAProcessThatIsNotTheAnnouncersChild) {
  Status st = ok_status();
  with_server([&] { st = announce_vmm(socket(), 1); });
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not a child of the announcing process"), std::string::npos) << st.message();
  EXPECT_TRUE(announced_.empty());
}

TEST_F(ServeControlTest, AMalformedRequestGetsAnErrorReply) {
  std::string reply;
  with_server([&] {
    auto fd = connect_line_socket(socket(), "test");
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(write_socket_line(fd->get(), R"({"announce_vmm": "me"})").ok());
    auto line = read_socket_line(fd->get());
    if (line) reply = *line;
  });
  EXPECT_NE(reply.find("\"ok\":false"), std::string::npos) << reply;
  EXPECT_NE(reply.find("announce_vmm"), std::string::npos) << reply;
  EXPECT_TRUE(announced_.empty());
}

}  // namespace
}  // namespace fcvm
