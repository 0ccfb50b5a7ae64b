// The agent protocol's framing: how the byte stream between host and fc-agent is cut into
// frames, and the frame types. What the payloads hold is in agent_messages.h; the protocol
// as a whole (conversation, flow control, attach) is described in agent_protocol.h.
//
//   u32 payload_length (little endian) | u8 type | u32 session (little endian) | payload
//
// Shared by the static guest binary and the host library: standard library only, nothing
// throws, everything inline.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fcvm::agent {

// Version of the framing and of every JSON schema below. Bumped on any incompatible change;
// HELLO carries it and PLAN must name the same value. 2: boot ids and ATTACH.
inline constexpr int kProtocolVersion = 2;

// Name of the virtio-serial port (`-device virtserialport,name=...`): shared by vmm-qemu,
// which creates the port, and the agent, which looks for it.
inline constexpr std::string_view kPortName = "fcvm.agent";
// The AF_VSOCK port the agent listens on when it finds no virtio-serial port.
inline constexpr std::uint32_t kVsockPort = 1024;

inline constexpr std::size_t kFrameHeaderSize = 9;
inline constexpr std::uint32_t kMaxPayloadSize = 1u << 20;

// Session of the container's main process.
inline constexpr std::uint32_t kMainSession = 0;

enum class FrameType : std::uint8_t {
  // guest -> host
  kHello = 0x01,
  kStarted = 0x02,
  kStdout = 0x03,
  kStderr = 0x04,
  kExit = 0x05,
  kError = 0x06,
  kAttached = 0x07,
  kStdinCredit = 0x08,
  kReady = 0x09,
  // host -> guest
  kPlan = 0x81,
  kExec = 0x82,
  kStdin = 0x83,
  kStdinEof = 0x84,
  kSignal = 0x85,
  kShutdown = 0x86,
  kAttach = 0x87,
  kCredit = 0x88,
  kGo = 0x89,
  kResize = 0x8a,
};

// Which side sends a frame type; a decoder accepts only frames travelling its way.
enum class Direction { kGuestToHost, kHostToGuest };

inline bool is_known_frame_type(std::uint8_t raw) {
  return (raw >= 0x01 && raw <= 0x09) || (raw >= 0x81 && raw <= 0x8a);
}

inline Direction direction_of(FrameType type) {
  return (static_cast<std::uint8_t>(type) & 0x80) ? Direction::kHostToGuest
                                                  : Direction::kGuestToHost;
}

inline std::string_view frame_type_name(FrameType type) {
  switch (type) {
    case FrameType::kHello: return "HELLO";
    case FrameType::kStarted: return "STARTED";
    case FrameType::kStdout: return "STDOUT";
    case FrameType::kStderr: return "STDERR";
    case FrameType::kExit: return "EXIT";
    case FrameType::kError: return "ERROR";
    case FrameType::kPlan: return "PLAN";
    case FrameType::kExec: return "EXEC";
    case FrameType::kStdin: return "STDIN";
    case FrameType::kStdinEof: return "STDIN_EOF";
    case FrameType::kSignal: return "SIGNAL";
    case FrameType::kShutdown: return "SHUTDOWN";
    case FrameType::kAttached: return "ATTACHED";
    case FrameType::kAttach: return "ATTACH";
    case FrameType::kStdinCredit: return "STDIN_CREDIT";
    case FrameType::kCredit: return "CREDIT";
    case FrameType::kReady: return "READY";
    case FrameType::kGo: return "GO";
    case FrameType::kResize: return "RESIZE";
  }
  return "UNKNOWN";
}

struct Frame {
  FrameType type = FrameType::kHello;
  std::uint32_t session = 0;
  std::string payload;

  bool operator==(const Frame&) const = default;
};

namespace detail {
inline void put_le32(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>((v >> 16) & 0xff));
  out.push_back(static_cast<char>((v >> 24) & 0xff));
}
inline std::uint32_t get_le32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<std::uint32_t>(u[0]) | (static_cast<std::uint32_t>(u[1]) << 8) |
         (static_cast<std::uint32_t>(u[2]) << 16) | (static_cast<std::uint32_t>(u[3]) << 24);
}
}  // namespace detail

// Appends one encoded frame to `out`. Returns false (and appends nothing) when the payload
// exceeds kMaxPayloadSize; callers split large byte streams into several frames.
inline bool append_frame(std::string& out, FrameType type, std::uint32_t session,
                         std::string_view payload) {
  if (payload.size() > kMaxPayloadSize) return false;
  out.reserve(out.size() + kFrameHeaderSize + payload.size());
  detail::put_le32(out, static_cast<std::uint32_t>(payload.size()));
  out.push_back(static_cast<char>(type));
  detail::put_le32(out, session);
  out.append(payload);
  return true;
}

// Incremental decoder: feed it whatever a non-blocking read returned, in any split, and it
// yields whole frames. The first malformed header puts it in a failed state for good, since
// the stream cannot be resynchronised. Not thread-safe; one decoder per connection.
class FrameDecoder {
 public:
  explicit FrameDecoder(Direction accept) : accept_(accept) {}

  // Appends every frame completed by `bytes` to `out`. Returns false on a protocol error
  // (see error()); frames decoded before the bad header are still appended.
  bool feed(std::string_view bytes, std::vector<Frame>& out) {
    if (failed()) return false;
    buffer_.append(bytes);
    std::size_t pos = 0;
    while (buffer_.size() - pos >= kFrameHeaderSize) {
      const char* h = buffer_.data() + pos;
      const std::uint32_t length = detail::get_le32(h);
      const auto raw_type = static_cast<std::uint8_t>(h[4]);
      const std::uint32_t session = detail::get_le32(h + 5);
      if (!is_known_frame_type(raw_type)) {
        error_ = "unknown frame type 0x" + hex_byte(raw_type);
        break;
      }
      const auto type = static_cast<FrameType>(raw_type);
      if (direction_of(type) != accept_) {
        error_ = "frame type " + std::string(frame_type_name(type)) +
                 " is not valid in this direction";
        break;
      }
      if (length > kMaxPayloadSize) {
        error_ = "frame payload of " + std::to_string(length) + " bytes exceeds the limit of " +
                 std::to_string(kMaxPayloadSize);
        break;
      }
      if (buffer_.size() - pos - kFrameHeaderSize < length) break;  // wait for the rest
      out.push_back(Frame{type, session, buffer_.substr(pos + kFrameHeaderSize, length)});
      pos += kFrameHeaderSize + length;
    }
    buffer_.erase(0, pos);
    if (failed()) buffer_.clear();
    return !failed();
  }

  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  // Bytes held for an incomplete frame.
  std::size_t buffered() const { return buffer_.size(); }

 private:
  static std::string hex_byte(std::uint8_t v) {
    static constexpr char kDigits[] = "0123456789abcdef";
    return {kDigits[v >> 4], kDigits[v & 0xf]};
  }

  Direction accept_;
  std::string buffer_;
  std::string error_;
};

}  // namespace fcvm::agent
