// AgentChannel: the host end of the fc-agent protocol (fcvm/agent_protocol.h), over the
// unix socket QEMU exposes for the guest's "fcvm.agent" virtio-serial port.
//
// Use from an event loop: register fd() with epoll_events(), call on_readable() when the
// socket is readable and on_writable() when it is writable; send_*() queue frames and write
// what the socket takes at once. Or use the blocking helpers (wait_hello, next_frame, flush)
// when nothing else needs the thread.
//
// Threading: one thread at a time owns an AgentChannel. Nothing here throws; failures are
// Status values (Errc::protocol for a misbehaving peer, Errc::timeout, Errc::io).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <fcvm/agent_plan.h>
#include <fcvm/agent_protocol.h>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm {

class AgentChannel {
 public:
  AgentChannel(AgentChannel&&) noexcept = default;
  AgentChannel& operator=(AgentChannel&&) noexcept = default;
  AgentChannel(const AgentChannel&) = delete;
  AgentChannel& operator=(const AgentChannel&) = delete;
  ~AgentChannel() = default;

  // Connects to the chardev socket at `socket`, retrying every 10 ms while it does not exist
  // or refuses (QEMU still starting) until `timeout`. Errc::timeout names the socket.
  static Result<AgentChannel> connect(const std::filesystem::path& socket,
                                      std::chrono::milliseconds timeout);

  // Wraps an already connected stream socket (a socketpair in tests). Makes it non-blocking.
  static Result<AgentChannel> adopt(UniqueFd fd);

  // The socket, for epoll. Owned by this object.
  int fd() const { return fd_.get(); }
  // EPOLLIN, plus EPOLLOUT while frames wait in the write queue.
  std::uint32_t epoll_events() const;
  bool wants_write() const { return pending() > 0; }
  // Bytes queued but not yet taken by the socket.
  std::size_t pending() const { return out_.size() - out_offset_; }

  // Reads what the socket holds (at most 256 KiB per call; with a level-triggered epoll the
  // rest makes the fd readable again) and returns the complete frames, oldest first (frames kept
  // back by wait_hello come first). HELLOs after the first one are dropped: the agent
  // repeats HELLO until it gets a PLAN. When the peer has closed the connection the frames
  // before the close are returned and closed() becomes true; further calls return no frames.
  // A malformed frame is Errc::protocol, and the channel is unusable afterwards.
  Result<std::vector<agent::Frame>> on_readable();

  // Writes queued frames until the socket would block. Errc::io when the peer is gone.
  Status on_writable();

  // True once the agent side closed the connection (guest powered off, QEMU exited).
  bool closed() const { return closed_; }

  // Queue one frame. Payloads over the frame limit are split for STDIN and refused
  // (Errc::invalid_argument) for the JSON frames.
  Status send(agent::FrameType type, std::uint32_t session, std::string_view payload);
  Status send_plan(const agent::Plan& plan);
  Status send_exec(std::uint32_t session, const agent::Process& process);
  Status send_stdin(std::uint32_t session, std::string_view bytes);
  Status send_stdin_eof(std::uint32_t session);
  Status send_signal(std::uint32_t session, int signal);
  Status send_shutdown(std::chrono::milliseconds timeout);

  // Blocks until the first HELLO arrives and checks its protocol version. Other frames
  // received meanwhile are kept for on_readable()/next_frame().
  Result<agent::Hello> wait_hello(std::chrono::milliseconds timeout);

  // Blocks until one frame is available (or `timeout`); Errc::timeout, or Errc::io when the
  // peer closed the connection first.
  Result<agent::Frame> next_frame(std::chrono::milliseconds timeout);

  // Blocks until the write queue is empty or `timeout` passes.
  Status flush(std::chrono::milliseconds timeout);

 private:
  explicit AgentChannel(UniqueFd fd) : fd_(std::move(fd)) {}
  // Waits for `events` on the socket until `deadline`; false on timeout.
  Result<bool> wait_for(short events, std::chrono::steady_clock::time_point deadline) const;
  void keep(std::vector<agent::Frame>& frames);

  UniqueFd fd_;
  agent::FrameDecoder decoder_{agent::Direction::kGuestToHost};
  std::deque<agent::Frame> backlog_;  // decoded but not yet handed out
  std::string out_;
  std::size_t out_offset_ = 0;
  bool hello_seen_ = false;
  bool closed_ = false;
};

}  // namespace fcvm
