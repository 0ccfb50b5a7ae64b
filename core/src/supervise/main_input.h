// MainInput: what the container's main process reads from this process: our stdin (-i),
// as STDIN frames for session 0, and our terminal's size (-t, on SIGWINCH), as RESIZE.
//
// STDIN is held to the agent's STDIN window (agent_protocol.h, "Flow control"): with
// kStdinWindow bytes sent and not yet credited our stdin is not read (nor watched), so a
// writer faster than the process's reading waits in its own pipe. EOF (or a read error)
// sends STDIN_EOF once. Nothing is read before the process started: STDIN for session 0
// means something only once it runs. A regular file, which epoll refuses, is read on
// poll() whenever the window has room.
//
// Threading: the loop's thread. Nothing throws; a send the agent channel refuses is the
// loop's to see on the channel itself.
#pragma once

#include <cstdint>

#include "agent/agent_channel.h"
#include "supervise/epoll_set.h"

namespace fcvm {

class MainInput {
 public:
  // `fd`: our stdin, borrowed (e.g. STDIN_FILENO); `forward`: -i, else it is never read.
  // Watches `fd` in `epoll` under `tag` while it may be read. `agent` and `epoll` must
  // outlive this object.
  MainInput(int fd, bool forward, AgentChannel& agent, EpollSet& epoll, std::uint64_t tag);

  // The main process started (STARTED for session 0, or a restored guest's at once).
  void started();
  // `tag` is ready: reads one chunk within the window and sends it (or STDIN_EOF).
  void on_readable();
  // Once per loop round: reads a regular file, which is never waited for.
  void poll();
  // STDIN_CREDIT for session 0.
  void on_credit(std::uint64_t bytes);
  // SIGWINCH: our terminal's size to the process's guest terminal; nothing before it
  // started (it starts with the size of that moment) or when `fd` is not a terminal.
  void on_resize();

  // Bytes sent and not yet credited.
  std::uint64_t in_flight() const { return in_flight_; }

 private:
  // Watches `fd` exactly while it may be read.
  void update_watch();

  int fd_;
  AgentChannel& agent_;
  EpollSet& epoll_;
  std::uint64_t tag_;
  bool open_;             // until EOF
  bool started_ = false;  // the process runs
  bool pollable_ = true;  // false: a regular file
  bool watched_ = false;
  std::uint64_t in_flight_ = 0;
};

}  // namespace fcvm
