#include "host_channel.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "console_log.h"

namespace fcvm::agent {
namespace {

constexpr std::size_t kChunk = 64u << 10;

}  // namespace

HostChannel::HostChannel(HostLink link, EpollSet& epoll, Events& events,
                         std::uint64_t port_token, std::uint64_t listener_token,
                         std::chrono::milliseconds retry_interval)
    : link_(std::move(link)), epoll_(epoll), events_(events), port_token_(port_token),
      listener_token_(listener_token), retry_interval_(retry_interval) {}

void HostChannel::start() {
  if (link_.listener_fd() >= 0) epoll_.add(link_.listener_fd(), EPOLLIN, listener_token_);
  watch_port();
}

void HostChannel::watch_port() {
  if (dead_ || link_.fd() < 0) return;
  const std::uint32_t events = EPOLLIN | (pending() > 0 ? std::uint32_t{EPOLLOUT} : 0u);
  if (!watched_) {
    epoll_.add(link_.fd(), events, port_token_);
    watched_ = true;
  } else if (events != watched_events_) {
    epoll_.modify(link_.fd(), events, port_token_);
  }
  watched_events_ = events;
}

void HostChannel::unwatch_port() {
  if (!watched_) return;
  epoll_.remove(link_.fd());
  watched_ = false;
}

void HostChannel::hang_up() {
  unwatch_port();
  drop_torn_frames();
  switch (link_.kind()) {
    case HostLink::Kind::serial_port:
      // No host attached to the port right now: look again shortly.
      retry_at_ = Clock::now() + retry_interval_;
      return;
    case HostLink::Kind::listener:
      link_.close_connection();  // the host connects again (after a restore, say)
      return;
    case HostLink::Kind::connected:
      dead_ = true;
      events_.on_lost("host closed the agent channel", false);
      return;
  }
}

void HostChannel::on_listener() {
  unwatch_port();  // a new connection replaces the current one
  if (!link_.accept_connection()) {
    watch_port();
    return;
  }
  // A new connection is a new stream: nothing of a frame begun on the old one carries over.
  drop_torn_frames();
  retry_at_.reset();
  watch_port();
  events_.on_connected();
  flush();
}

void HostChannel::on_timer(Clock::time_point now) {
  if (!retry_at_ || now < *retry_at_) return;
  retry_at_.reset();
  watch_port();
  flush();
}

void HostChannel::drop_torn_frames() {
  decoder_ = FrameDecoder(Direction::kHostToGuest);
  out_.rewind_torn();
}

void HostChannel::on_port_event(std::uint32_t events) {
  if (events & EPOLLOUT) flush();
  if (!watched_ || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
  char buf[kChunk];
  for (;;) {
    const ssize_t n = ::read(link_.fd(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      // virtio-serial reads 0 (and polls HUP) while no host is connected.
      hang_up();
      return;
    }
    std::vector<Frame> frames;
    const bool ok = decoder_.feed(std::string_view(buf, static_cast<size_t>(n)), frames);
    for (const Frame& f : frames) events_.on_frame(f);
    if (!ok) {
      // The stream cannot be resynchronised: stop reading it.
      events_.on_lost(decoder_.error(), true);
      unwatch_port();
      return;
    }
    if (!watched_) return;  // a handler stopped reading
  }
}

void HostChannel::send(FrameType type, std::uint32_t session, std::string_view payload) {
  if (dead_) return;
  out_.push(type, session, payload);
  flush();
}

void HostChannel::flush() {
  int err = 0;
  if (!dead_ && link_.fd() >= 0 &&
      out_.write_to(link_.fd(), kChunk, &err) == OutboundFrames::WriteResult::kFailed) {
    log_line("write to host: " + errno_text(err));
    hang_up();
  }
  if (watched_) watch_port();  // EPOLLOUT only while something is queued
  events_.on_backlog(pending());
}

}  // namespace fcvm::agent
