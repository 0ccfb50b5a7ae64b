// HostChannel: the agent's end of the frame stream over a HostLink. Reads and decodes
// frames from the host, queues and writes frames to it, and handles the link's hang-ups and
// reconnections the way each transport needs (see host_link.h).
//
// Whenever the connection drops, a partly received frame is discarded and a partly sent
// one is sent again from its start on the next connection (OutboundFrames), so every
// connection begins at a frame boundary in both directions.
//
// What happens on the stream is reported to the Agent through Events, synchronously from
// inside the calls below. Threading: the agent's single thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "epoll_set.h"
#include "fcvm/agent_framing.h"
#include "host_link.h"
#include "outbound_frames.h"

namespace fcvm::agent {

class HostChannel {
 public:
  using Clock = std::chrono::steady_clock;

  class Events {
   public:
    // A whole frame from the host.
    virtual void on_frame(const Frame& frame) = 0;
    // The host opened a new connection (listener links only).
    virtual void on_connected() = 0;
    // The channel is over for good: a connected stream hung up, or the host broke the
    // framing (then the channel stops reading right after this returns). Frames queued
    // from here on are still written where the link allows.
    virtual void on_lost(const std::string& reason, bool protocol_error) = 0;
    // The queue of unwritten bytes changed; called after every flush.
    virtual void on_backlog(std::size_t pending) = 0;

   protected:
    ~Events() = default;
  };

  // `port_token` / `listener_token` tag the link's fds in `epoll`. While no host is attached
  // to a serial port, the port leaves the epoll set and is retried after `retry_interval`.
  HostChannel(HostLink link, EpollSet& epoll, Events& events, std::uint64_t port_token,
              std::uint64_t listener_token, std::chrono::milliseconds retry_interval);
  HostChannel(const HostChannel&) = delete;
  HostChannel& operator=(const HostChannel&) = delete;

  // Adds the link's fds to the epoll set.
  void start();

  // The epoll set reported `events` on the port / the listener.
  void on_port_event(std::uint32_t events);
  void on_listener();
  // When on_timer wants to run next (a serial port's retry), if at all.
  std::optional<Clock::time_point> next_timer() const { return retry_at_; }
  void on_timer(Clock::time_point now);

  // Queues a frame (split when the payload is larger than kMaxPayloadSize) and writes what
  // the link takes now. Dropped once the channel is dead.
  void send(FrameType type, std::uint32_t session, std::string_view payload);
  // Writes what the link takes now.
  void flush();
  // Bytes queued and not yet written.
  std::size_t pending() const { return out_.pending(); }
  // Nothing can be written any more (a final hang-up or a fatal write error).
  bool dead() const { return dead_; }

 private:
  void watch_port();
  void unwatch_port();
  void hang_up();
  // Forgets a partly received frame and rewinds to the start of a partly sent one.
  void drop_torn_frames();

  HostLink link_;
  EpollSet& epoll_;
  Events& events_;
  std::uint64_t port_token_;
  std::uint64_t listener_token_;
  std::chrono::milliseconds retry_interval_;

  FrameDecoder decoder_{Direction::kHostToGuest};
  OutboundFrames out_;
  bool watched_ = false;
  std::uint32_t watched_events_ = 0;
  bool dead_ = false;
  std::optional<Clock::time_point> retry_at_;
};

}  // namespace fcvm::agent
