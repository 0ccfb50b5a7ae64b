#include "supervise/epoll_set.h"

#include <cerrno>
#include <string>

namespace fcvm {

Result<EpollSet> EpollSet::create() {
  UniqueFd fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!fd) return errno_status("epoll_create1");
  return EpollSet(std::move(fd));
}

Status EpollSet::watch(int fd, std::uint32_t events, std::uint64_t tag) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag;
  if (::epoll_ctl(fd_.get(), EPOLL_CTL_MOD, fd, &ev) == 0) return ok_status();
  if (::epoll_ctl(fd_.get(), EPOLL_CTL_ADD, fd, &ev) == 0) return ok_status();
  const int err = errno;
  return errno_status("epoll_ctl " + std::to_string(fd), err);
}

void EpollSet::unwatch(int fd) { ::epoll_ctl(fd_.get(), EPOLL_CTL_DEL, fd, nullptr); }

Result<int> EpollSet::wait(epoll_event* events, int max, int timeout_ms) {
  const int n = ::epoll_wait(fd_.get(), events, max, timeout_ms);
  if (n >= 0) return n;
  if (errno == EINTR) return 0;
  return errno_status("epoll_wait");
}

}  // namespace fcvm
