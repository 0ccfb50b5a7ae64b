// EpollSet: the agent's one epoll instance, owning its fd. Each watched fd carries a 64-bit
// token the loop dispatches on. Used from the agent's single thread only.
#pragma once

#include <sys/epoll.h>

#include <cstdint>

#include "owned_fd.h"

namespace fcvm::agent {

class EpollSet {
 public:
  // Throws SetupError when the kernel refuses an epoll instance.
  EpollSet();

  // Adds / changes the watch of `fd`; throws SetupError on failure (a bug: a closed fd,
  // or adding twice).
  void add(int fd, std::uint32_t events, std::uint64_t token);
  void modify(int fd, std::uint32_t events, std::uint64_t token);
  // Stops watching `fd`; a no-op for an fd not in the set.
  void remove(int fd);

  // Waits up to `timeout_ms` (-1: forever) for events; returns how many were stored in
  // `events` (0 on timeout or EINTR). Throws SetupError on any other failure.
  int wait(epoll_event* events, int max_events, int timeout_ms);

 private:
  OwnedFd fd_;
};

}  // namespace fcvm::agent
