#include "supervise/epoll_set.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    read.reset(fds[0]);
    write.reset(fds[1]);
  }
  UniqueFd read, write;
};

// What is ready now (wait without blocking): the tags reported.
std::vector<std::uint64_t> ready(EpollSet& set) {
  epoll_event events[8];
  auto n = set.wait(events, 8, 0);
  EXPECT_TRUE(n.ok()) << n.status().message();
  std::vector<std::uint64_t> tags;
  for (int i = 0; n.ok() && i < *n; ++i) tags.push_back(events[i].data.u64);
  return tags;
}

TEST(EpollSetTest, ReportsTheTagOfAReadyDescriptorUntilUnwatched) {
  auto set = EpollSet::create();
  ASSERT_TRUE(set.ok()) << set.status().message();
  Pipe p;
  ASSERT_TRUE(set->watch(p.read.get(), EPOLLIN, 7).ok());
  EXPECT_TRUE(ready(*set).empty());
  ASSERT_EQ(::write(p.write.get(), "x", 1), 1);
  EXPECT_EQ(ready(*set), std::vector<std::uint64_t>{7});
  set->unwatch(p.read.get());
  EXPECT_TRUE(ready(*set).empty());
  set->unwatch(p.read.get());  // again: nothing to do
}

TEST(EpollSetTest, WatchingAgainReplacesEventsAndTag) {
  auto set = EpollSet::create();
  ASSERT_TRUE(set.ok());
  Pipe p;
  ASSERT_TRUE(set->watch(p.write.get(), EPOLLOUT, 1).ok());
  EXPECT_EQ(ready(*set), std::vector<std::uint64_t>{1});
  ASSERT_TRUE(set->watch(p.write.get(), EPOLLOUT, 2).ok());
  EXPECT_EQ(ready(*set), std::vector<std::uint64_t>{2});
  ASSERT_TRUE(set->watch(p.write.get(), 0, 2).ok());  // no interest left
  EXPECT_TRUE(ready(*set).empty());
}

TEST(EpollSetTest, ARegularFileIsRefused) {
  auto dir = TempDir::create("fcvm-epoll-set-test-");
  ASSERT_TRUE(dir.ok());
  UniqueFd file(::open((dir->path() / "f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600));
  ASSERT_TRUE(file);
  auto set = EpollSet::create();
  ASSERT_TRUE(set.ok());
  EXPECT_FALSE(set->watch(file.get(), EPOLLIN, 1).ok());
}

}  // namespace
}  // namespace fcvm
