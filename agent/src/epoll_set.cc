#include "epoll_set.h"

#include <cerrno>

#include "setup_error.h"

namespace fcvm::agent {

EpollSet::EpollSet() : fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (!fd_) throw_errno("epoll_create1");
}

void EpollSet::add(int fd, std::uint32_t events, std::uint64_t token) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (::epoll_ctl(fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl ADD");
}

void EpollSet::modify(int fd, std::uint32_t events, std::uint64_t token) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (::epoll_ctl(fd_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) throw_errno("epoll_ctl MOD");
}

void EpollSet::remove(int fd) { ::epoll_ctl(fd_.get(), EPOLL_CTL_DEL, fd, nullptr); }

int EpollSet::wait(epoll_event* events, int max_events, int timeout_ms) {
  const int n = ::epoll_wait(fd_.get(), events, max_events, timeout_ms);
  if (n < 0 && errno != EINTR) throw_errno("epoll_wait");
  return n < 0 ? 0 : n;
}

}  // namespace fcvm::agent
