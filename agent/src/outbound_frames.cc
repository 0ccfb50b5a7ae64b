#include "outbound_frames.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace fcvm::agent {

void OutboundFrames::push(FrameType type, std::uint32_t session, std::string_view payload) {
  while (payload.size() > kMaxPayloadSize) {
    append_frame(bytes_, type, session, payload.substr(0, kMaxPayloadSize));
    payload.remove_prefix(kMaxPayloadSize);
  }
  append_frame(bytes_, type, session, payload);
}

OutboundFrames::WriteResult OutboundFrames::write_to(int fd, std::size_t chunk, int* err) {
  WriteResult result = WriteResult::kDrained;
  while (pending() > 0) {
    const ssize_t n = ::write(fd, bytes_.data() + offset_, std::min(pending(), chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      result = WriteResult::kBlocked;
      break;
    }
    if (n < 0) {
      *err = errno;
      result = WriteResult::kFailed;
      break;
    }
    offset_ += static_cast<std::size_t>(n);
    skip_written_frames();
  }
  compact();
  return result;
}

void OutboundFrames::skip_written_frames() {
  while (frame_start_ + kFrameHeaderSize <= offset_) {
    const std::size_t end =
        frame_start_ + kFrameHeaderSize + detail::get_le32(bytes_.data() + frame_start_);
    if (end > offset_) break;
    frame_start_ = end;
  }
}

void OutboundFrames::compact() {
  if (pending() == 0) {
    bytes_.clear();
    offset_ = 0;
    frame_start_ = 0;
  } else if (frame_start_ > (1u << 20) && frame_start_ > bytes_.size() / 2) {
    // Compact at a frame boundary, so the queue still starts with a whole frame.
    bytes_.erase(0, frame_start_);
    offset_ -= frame_start_;
    frame_start_ = 0;
  }
}

}  // namespace fcvm::agent
