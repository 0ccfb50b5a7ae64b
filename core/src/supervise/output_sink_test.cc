#include "supervise/output_sink.h"

#include <fcntl.h>
#include <signal.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fcvm/unique_fd.h"

namespace fcvm {
namespace {

std::string read_available(int fd) {
  std::string out;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

// A full pipe never blocks the writer: what does not fit waits in the queue, and leaves
// in order once the reader reads. The writer's own descriptor stays blocking.
TEST(OutputSink, FullPipeQueuesInsteadOfBlocking) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  UniqueFd r(fds[0]), w(fds[1]);
  ASSERT_GT(::fcntl(w.get(), F_SETPIPE_SZ, 4096), 0);
  OutputSink sink(w.get());
  ASSERT_GE(sink.poll_fd(), 0);
  std::string data;
  for (int i = 0; i < 20000; ++i) data += static_cast<char>('a' + i % 26);
  const std::size_t done = sink.write(data);
  EXPECT_LT(done, data.size());
  EXPECT_EQ(sink.queued(), data.size() - done);
  EXPECT_EQ(::fcntl(w.get(), F_GETFL) & O_NONBLOCK, 0);
  ::fcntl(r.get(), F_SETFL, O_NONBLOCK);
  std::string got;
  while (sink.queued() > 0) {
    got += read_available(r.get());
    sink.flush();
  }
  got += read_available(r.get());
  EXPECT_EQ(got, data);
  EXPECT_FALSE(sink.broken());
}

// The reader went away: the sink says so and counts everything as done with.
TEST(OutputSink, ClosedReaderBreaksTheSink) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  UniqueFd r(fds[0]), w(fds[1]);
  OutputSink sink(w.get());
  ::signal(SIGPIPE, SIG_IGN);  // as fcvm does: EPIPE instead of death
  r.reset();
  EXPECT_EQ(sink.write("lost"), 4u);
  EXPECT_TRUE(sink.broken());
  EXPECT_EQ(sink.queued(), 0u);
  EXPECT_EQ(sink.write("more"), 4u);
}

// A socket (our stdout under some supervisors) is written without blocking too.
TEST(OutputSink, SocketQueuesInsteadOfBlocking) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd a(fds[0]), b(fds[1]);
  OutputSink sink(a.get());
  const std::string data(4u << 20, 'z');
  EXPECT_LT(sink.write(data), data.size());
  EXPECT_GT(sink.queued(), 0u);
  b.reset();
  sink.flush();
  EXPECT_TRUE(sink.broken());
}

// A regular file is written at once and cannot be polled.
TEST(OutputSink, RegularFileIsWrittenDirectly) {
  char name[] = "/tmp/fcvm-output-sink-XXXXXX";
  UniqueFd f(::mkstemp(name));
  ASSERT_TRUE(f);
  ::unlink(name);
  OutputSink sink(f.get());
  EXPECT_EQ(sink.poll_fd(), -1);
  EXPECT_EQ(sink.write("hello"), 5u);
  EXPECT_EQ(::lseek(f.get(), 0, SEEK_CUR), 5);
}

}  // namespace
}  // namespace fcvm
