// ControlClient: the client end of the host control protocol (control/control_protocol.h),
// used by `fcvm exec` and `fcvm stop`. Blocking: writes wait for the socket, receive()
// waits for the next bytes.
//
// Threading: one thread at a time. Nothing here throws; failures are Status values.
#pragma once

#include <chrono>
#include <filesystem>
#include <vector>

#include "control/control_protocol.h"
#include "fcvm/unique_fd.h"

namespace fcvm::control {

class ControlClient {
 public:
  // Connects to the control socket at `socket`. unavailable when nothing listens there.
  static Result<ControlClient> connect(const std::filesystem::path& socket);

  // The socket, for poll(). Owned by this object.
  int fd() const { return fd_.get(); }

  Status send(MessageType type, std::string_view payload);
  Status send_request(const Request& request) {
    return send(MessageType::kRequest, to_payload(request));
  }

  // Non-blocking sending, for a client that must keep reading while the server is slow to
  // take its input (exec's stdin): queue() appends a message, write_queued() writes what
  // the socket takes now (POLLOUT on fd() while queued() > 0). Errc::io when the server
  // is gone (the queue is then dropped; what the server sent can still be received).
  Status queue(MessageType type, std::string_view payload);
  Status write_queued();
  std::size_t queued() const { return out_.size(); }

  // Waits for bytes from the server and returns the messages they complete (maybe none).
  // At the end of the stream returns no messages and closed() turns true. Errc::protocol
  // for a malformed stream.
  Result<std::vector<Message>> receive();
  bool closed() const { return closed_; }

  // Waits up to `timeout` for the server's REPLY to a request, keeping nothing else.
  // Errc::timeout when the server does not answer (a stopped or hung fcvm process).
  Result<Reply> wait_reply(std::chrono::milliseconds timeout);

 private:
  explicit ControlClient(UniqueFd fd) : fd_(std::move(fd)) {}

  UniqueFd fd_;
  std::string out_;  // queued, not yet written
  MessageDecoder decoder_{Sender::server};
  bool closed_ = false;
};

}  // namespace fcvm::control
