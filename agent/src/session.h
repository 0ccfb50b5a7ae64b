// Session: one process the agent runs for the host (session 0 the container's main
// process, exec sessions above), with its pipes and its flow-control state. Owned by the
// agent's session table and used from the agent's single thread only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "owned_fd.h"

namespace fcvm::agent {

struct Session {
  std::uint32_t id = 0;
  pid_t pid = -1;        // -1 once reaped: the pid may be reused, so nothing signals it then
  bool started = false;  // STARTED sent; false when the program could not be run
  OwnedFd in, out, err;
  OwnedFd terminal;  // a tty process's pseudo-terminal master, for RESIZE
  std::string in_buffer;  // STDIN bytes the pipe has not taken yet
  bool in_eof = false;    // STDIN_EOF received: close once in_buffer is written
  std::uint32_t in_consumed = 0;  // STDIN bytes written or dropped, not yet credited
  bool in_watched = false;
  bool out_watched = false;
  bool err_watched = false;
  std::uint32_t window = 0;      // output window; 0: none
  std::uint64_t out_credit = 0;  // output bytes that may still be sent (with a window)
  std::optional<int> wait_status;  // reaped: EXIT follows once the pipes are drained

  // The output pipe of one stream and whether it is in the epoll set.
  OwnedFd& output(bool is_stderr) { return is_stderr ? err : out; }
  bool& output_watched(bool is_stderr) { return is_stderr ? err_watched : out_watched; }
  // Output may be read now: not reaped, and credit left when there is a window.
  bool may_send_output() const { return !wait_status && (window == 0 || out_credit > 0); }
};

}  // namespace fcvm::agent
