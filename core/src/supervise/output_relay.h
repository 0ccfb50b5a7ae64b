// OutputRelay: the container's main-process output on its way out of this process: into
// the container log (capped, capped_log.h) and, in a foreground run, to our stdout and
// stderr, whose readers may be slow or gone.
//
// Flow control (agent_protocol.h, "Flow control"): the guest's bytes are due back to it as
// credit only once they left this process, written to the log and to their stream (or
// with no stream to write to); relay() and flush() say how many are due, the caller sends
// the credit. A slow reader thus slows the container's process and nothing queues here
// beyond about a window; output past kMaxQueuedOutput on one stream (a guest that ignores
// its window) is dropped with a warning. Replayed output (a startup snapshot's, written
// before the guest's own) is never credited.
//
// Threading: the loop's thread. Nothing throws; a log write error is warned about once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/agent_channel.h"
#include "fcvm/log.h"
#include "fcvm/result.h"
#include "supervise/capped_log.h"
#include "supervise/output_chunk.h"
#include "supervise/output_sink.h"

namespace fcvm {

// Output bytes a session may have in flight between the agent and its reader.
inline constexpr std::uint32_t kOutputWindow = 256u << 10;
// Output queued for one reader beyond which the guest has ignored its output window (the
// window plus what one agent read may add); the excess is dropped.
inline constexpr std::size_t kMaxQueuedOutput = 2 * kOutputWindow + (1u << 20);

// Sends `bytes` of output credit for `session` (in as many CREDIT frames as it takes).
void send_output_credit(AgentChannel& agent, std::uint32_t session, std::uint64_t bytes);

class OutputRelay {
 public:
  struct Options {
    std::filesystem::path log;       // appended to
    std::uint64_t log_max_bytes = 0;  // 0: no cap
    // Our streams (borrowed, must outlive the relay), e.g. STDOUT_FILENO; -1: the output
    // goes to the log only.
    int stdout_fd = -1;
    int stderr_fd = -1;
    // Keeps up to this many bytes of the guest's output for startup_output(); 0: none.
    std::size_t keep_startup_output = 0;
  };
  // Errors: the log cannot be opened.
  static Result<std::unique_ptr<OutputRelay>> open(const Options& options, LoggerPtr log);

  // What a write did: guest bytes now due as credit, and whether the stream's reader was
  // just found gone (true once per relay; a closed pipe is `| head -1`, after which
  // output goes to the log only and is credited at once).
  struct Progress {
    std::uint64_t credit = 0;
    bool reader_left = false;
  };
  // The guest's output on one stream.
  Progress relay(bool is_stderr, std::string_view bytes);
  // Output from before this VM existed: written as the guest's is, never credited.
  Progress replay(bool is_stderr, std::string_view bytes);
  // The stream is writable (EPOLLOUT on its poll_fd()): writes what it takes.
  Progress flush(bool is_stderr);
  // Blocks until every queued byte is written or its reader is gone (the end of a run).
  void drain();

  // The descriptor to watch for EPOLLOUT while wants_write(); -1 when none (not forwarded,
  // or a regular file, which never waits).
  int poll_fd(bool is_stderr) const;
  bool wants_write(bool is_stderr) const;

  // With keep_startup_output: the guest's output so far, chunks merged per stream; null
  // once it outgrew that or stop_keeping_startup_output() was called.
  const std::vector<OutputChunk>* startup_output() const {
    return startup_output_ ? &*startup_output_ : nullptr;
  }
  void stop_keeping_startup_output() { startup_output_.reset(); }

 private:
  OutputRelay(CappedLog file, const Options& options, LoggerPtr log);
  Progress write(bool is_stderr, std::string_view bytes, bool from_guest);
  // Credit for `done` bytes that left `is_stderr`'s sink, and whether its reader left.
  Progress after_write(bool is_stderr, std::size_t done);
  OutputSink* sink(bool is_stderr) const { return sinks_[is_stderr].get(); }

  CappedLog file_;
  bool file_failed_ = false;  // warned once
  std::unique_ptr<OutputSink> sinks_[2];  // stdout, stderr
  bool broken_ = false;                   // a reader left: no more writing to either
  std::uint64_t replayed_[2] = {0, 0};    // replayed bytes still queued per sink
  std::size_t keep_startup_output_;
  std::optional<std::vector<OutputChunk>> startup_output_;
  std::size_t startup_output_bytes_ = 0;
  LoggerPtr log_;
};

}  // namespace fcvm
