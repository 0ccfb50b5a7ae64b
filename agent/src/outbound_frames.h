// OutboundFrames: the encoded frames waiting to be written to the host, kept so that every
// connection starts at a frame boundary.
//
// The queue remembers where the frame it is writing began. When the connection drops, the
// bytes of a partly written frame are sent again from that frame's start on the next
// connection (rewind_torn()), since the host discarded the torn part. Used from the agent's
// single thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fcvm/agent_framing.h"

namespace fcvm::agent {

class OutboundFrames {
 public:
  // What write_to() ended with.
  enum class WriteResult {
    kDrained,  // nothing left to write
    kBlocked,  // the fd took what it could (EAGAIN); wait for EPOLLOUT
    kFailed,   // a write error other than EAGAIN/EINTR; errno is kept in *err
  };

  // Appends `payload` as one frame, or as several of at most kMaxPayloadSize each (only
  // byte streams are ever that large).
  void push(FrameType type, std::uint32_t session, std::string_view payload);

  // Writes queued bytes to the non-blocking `fd` in chunks of at most `chunk` bytes until
  // the queue is empty, the fd would block, or a write fails (then *err = errno).
  WriteResult write_to(int fd, std::size_t chunk, int* err);

  // Bytes queued and not yet written.
  std::size_t pending() const { return bytes_.size() - offset_; }

  // The connection dropped: the frame being written goes again whole.
  void rewind_torn() { offset_ = frame_start_; }

 private:
  // Moves frame_start_ past every frame now written whole.
  void skip_written_frames();
  // Frees written bytes: all of them once drained, else up to frame_start_ when that frees
  // much.
  void compact();

  std::string bytes_;            // starts at a frame boundary
  std::size_t offset_ = 0;       // first byte not yet written
  std::size_t frame_start_ = 0;  // start of the frame holding offset_
};

}  // namespace fcvm::agent
