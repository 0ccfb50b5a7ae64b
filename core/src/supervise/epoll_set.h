// EpollSet: the supervisor's epoll instance, shared by the parts of its loop: each part
// watches its own descriptors under tags the loop gives it, and the loop hands what wait()
// reports to the part that owns the tag. Level-triggered throughout.
//
// Descriptors are borrowed: a part unwatches (or closes) its own before they go away.
//
// Threading: the loop's thread. Nothing throws.
#pragma once

#include <sys/epoll.h>

#include <cstdint>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm {

class EpollSet {
 public:
  // Errc::io when the kernel refuses an epoll instance.
  static Result<EpollSet> create();

  // Watches `fd` for `events` under `tag`, replacing what it was watched for before.
  // Errors when the kernel refuses the descriptor (EPERM: a regular file, which is never
  // waited for).
  Status watch(int fd, std::uint32_t events, std::uint64_t tag);
  // Stops watching `fd`; one not watched is nothing to do.
  void unwatch(int fd);

  // Waits up to `timeout_ms` (-1: without limit) for events, fills `events` (at most `max`)
  // and returns how many; 0 on timeout or EINTR.
  Result<int> wait(epoll_event* events, int max, int timeout_ms);

 private:
  explicit EpollSet(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace fcvm
