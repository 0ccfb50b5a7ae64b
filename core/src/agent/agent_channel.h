// AgentChannel: the host end of the fc-agent protocol (fcvm/agent_protocol.h), over a
// connected stream socket from Vm::connect_agent (the transport is the VMM's business).
//
// Use from an event loop: register fd() with epoll_events(), call on_readable() when the
// socket is readable and on_writable() when it is writable; send_*() queue frames and write
// what the socket takes at once. Or use the blocking helpers (wait_hello, next_frame, flush)
// when nothing else needs the thread.
//
// Threading: one thread at a time owns an AgentChannel. Nothing here throws; failures are
// Status values (Errc::protocol for a misbehaving peer, Errc::timeout, Errc::io).
#pragma once

#include <csignal>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
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

  // Wraps a connected stream socket (Vm::connect_agent's, or a socketpair in tests) and
  // makes it non-blocking. Errc::io when fcntl fails.
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
  Status send_shutdown(std::chrono::milliseconds timeout, int signal = SIGTERM);
  // Queues ATTACH for `generation` with this host's wall clock and 32 bytes from its RNG.
  Status send_attach(std::uint64_t generation);

  // Blocks: sends ATTACH, then waits up to `timeout` for the ATTACHED answering
  // `generation` (other frames received meanwhile are kept for on_readable/next_frame;
  // ATTACHED answers to earlier generations are dropped).
  // With `expected_boot_id`, an agent reporting another boot id is refused with
  // Errc::protocol: after a restore that means the guest booted afresh instead of
  // continuing the snapshot (its memory did not come through).
  Result<agent::Attached> attach(std::uint64_t generation,
                                 const std::optional<std::string>& expected_boot_id,
                                 std::chrono::milliseconds timeout);
  // The boot id check of attach(), for callers that read ATTACHED in their own loop.
  static Status check_boot_id(const agent::Attached& attached, const std::string& expected);

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
