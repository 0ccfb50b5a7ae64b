// OutputSink: one of this process's output streams (stdout or stderr) written from an event
// loop without ever blocking it: bytes the stream cannot take now wait in a queue until
// the stream is writable (EPOLLOUT on poll_fd()).
//
// The loop's own descriptor is never switched to non-blocking mode, since the open file
// description is shared with the shell and the other programs of a pipeline: a pipe,
// FIFO or terminal is reopened through /proc/self/fd with O_NONBLOCK (a description of
// its own); a socket is written with MSG_DONTWAIT; a regular file or anything that cannot
// be reopened is written directly (files do not block).
//
// Bounds: the queue is the caller's to bound (the supervisor credits the guest only for
// bytes that left, so at most one output window waits here).
//
// Threading: one thread. Nothing throws.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "fcvm/unique_fd.h"

namespace fcvm {

class OutputSink {
 public:
  // Writes to `fd` (borrowed; it must outlive the sink), e.g. STDOUT_FILENO.
  explicit OutputSink(int fd);
  OutputSink(const OutputSink&) = delete;
  OutputSink& operator=(const OutputSink&) = delete;

  // The descriptor to watch for EPOLLOUT while queued() > 0; -1 when writes never wait
  // (a regular file: epoll refuses those).
  int poll_fd() const { return pollable_ ? fd() : -1; }

  // Queues `bytes` behind what is queued and writes what the stream takes now. Returns
  // how many queued bytes are done with: written, or dropped because the reader is gone.
  std::size_t write(std::string_view bytes);
  // Writes queued bytes until the stream would block; returns how many are done with.
  std::size_t flush();
  // Blocks until everything queued is written or the reader is gone (the end of a run).
  void drain();

  std::size_t queued() const { return queue_.size() - offset_; }
  // The reader went away (EPIPE) or the stream failed: the queue was dropped and later
  // writes are dropped too.
  bool broken() const { return broken_; }

 private:
  int fd() const { return own_ ? own_.get() : borrowed_; }
  // One write of queued bytes; false when the stream would block or broke.
  bool write_once();

  int borrowed_;
  UniqueFd own_;  // our own non-blocking description, when the stream could be reopened
  bool socket_ = false;
  bool pollable_ = false;
  bool broken_ = false;
  std::string queue_;
  std::size_t offset_ = 0;  // queue_ before it is written; compacted at half
};

}  // namespace fcvm
