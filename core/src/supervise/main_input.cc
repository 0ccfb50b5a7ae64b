#include "supervise/main_input.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string_view>

#include "supervise/terminal.h"

namespace fcvm {

MainInput::MainInput(int fd, bool forward, AgentChannel& agent, EpollSet& epoll, std::uint64_t tag)
    : fd_(fd), agent_(agent), epoll_(epoll), tag_(tag), open_(forward) {}

void MainInput::started() {
  started_ = true;
  update_watch();
}

void MainInput::update_watch() {
  if (!pollable_) return;
  const bool want = open_ && started_ && in_flight_ < agent::kStdinWindow;
  if (want == watched_) return;
  if (!want) {
    epoll_.unwatch(fd_);
  } else if (!epoll_.watch(fd_, EPOLLIN, tag_).ok()) {
    pollable_ = false;  // EPERM: a regular file; poll() reads it
    return;
  }
  watched_ = want;
}

void MainInput::on_readable() {
  if (!open_ || !started_ || in_flight_ >= agent::kStdinWindow) return update_watch();
  char buf[65536];
  const auto room = static_cast<std::size_t>(
      std::min<std::uint64_t>(sizeof buf, agent::kStdinWindow - in_flight_));
  const ssize_t n = ::read(fd_, buf, room);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n > 0) {
    in_flight_ += static_cast<std::uint64_t>(n);
    (void)agent_.send_stdin(agent::kMainSession, std::string_view(buf, static_cast<std::size_t>(n)));
  } else {  // EOF, or an error that ends our input all the same
    open_ = false;
    (void)agent_.send_stdin_eof(agent::kMainSession);
  }
  update_watch();
}

void MainInput::poll() {
  if (open_ && !pollable_) on_readable();
}

void MainInput::on_credit(std::uint64_t bytes) {
  in_flight_ -= std::min(in_flight_, bytes);
  update_watch();
}

void MainInput::on_resize() {
  if (!started_) return;
  if (auto size = terminal_size(fd_)) {
    (void)agent_.send(agent::FrameType::kResize, agent::kMainSession, size->to_payload());
  }
}

}  // namespace fcvm
