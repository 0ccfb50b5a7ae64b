#include "supervise/output_sink.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <string>

namespace fcvm {
namespace {

// Whether epoll accepts `fd` (it refuses regular files and directories with EPERM).
bool epoll_accepts(int fd) {
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  epoll_event ev{};
  ev.events = EPOLLOUT;
  return ep && ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
}

}  // namespace

OutputSink::OutputSink(int fd) : borrowed_(fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    broken_ = true;  // closed: nothing can be written
    return;
  }
  if (S_ISSOCK(st.st_mode)) {
    socket_ = true;
  } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    own_.reset(::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  }
  pollable_ = (socket_ || own_) && epoll_accepts(this->fd());
}

bool OutputSink::write_once() {
  const char* data = queue_.data() + offset_;
  const ssize_t n = socket_ ? ::send(fd(), data, queued(), MSG_DONTWAIT | MSG_NOSIGNAL)
                            : ::write(fd(), data, queued());
  if (n > 0) {
    offset_ += static_cast<std::size_t>(n);
    return true;
  }
  if (n < 0 && errno == EINTR) return true;
  if (n < 0 && errno == EAGAIN) return false;
  broken_ = true;  // EPIPE (SIGPIPE is ignored), or a stream that fails for good
  return false;
}

std::size_t OutputSink::flush() {
  const std::size_t before = queued();
  while (!broken_ && queued() > 0 && write_once()) {
  }
  if (broken_) {
    queue_.clear();
    offset_ = 0;
    return before;
  }
  if (queued() == 0) {
    queue_.clear();
    offset_ = 0;
  } else if (offset_ > queue_.size() / 2) {
    queue_.erase(0, offset_);  // at most once per half a queue: linear, not quadratic
    offset_ = 0;
  }
  return before - queued();
}

std::size_t OutputSink::write(std::string_view bytes) {
  if (broken_) return bytes.size();
  queue_.append(bytes);
  return flush();
}

void OutputSink::drain() {
  while (!broken_ && queued() > 0) {
    if (write_once()) continue;
    if (broken_) break;
    pollfd p{fd(), POLLOUT, 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) break;
  }
  flush();
}

}  // namespace fcvm
