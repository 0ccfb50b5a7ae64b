// HostLink: the agent's connection to the host, over whichever transport the VMM provides.
// The event loop above it is the same for all: it reads and writes fd() and, for a
// listener, accepts the host's next connection when listener_fd() is readable.
//
//   serial_port  a virtio-serial port (vmm-qemu). Always open; while no host is attached it
//                reads 0 and polls HUP, which is transient: the agent retries the same fd.
//   listener     a listening socket, AF_VSOCK on kVsockPort in a Firecracker guest. The host
//                connects, and connects again after a restore; a hang-up closes that
//                connection and the agent waits for the next.
//   connected    an already connected stream (dry runs); a hang-up is final.
//
// Threading: the agent's single thread. Errors throw SetupError.
#pragma once

#include <cstdint>
#include <filesystem>

#include "owned_fd.h"

namespace fcvm::agent {

class HostLink {
 public:
  enum class Kind { serial_port, listener, connected };

  static HostLink serial_port(OwnedFd port);
  static HostLink listener(OwnedFd listening_socket);
  static HostLink connected(OwnedFd stream);

  // A non-blocking AF_VSOCK listener on `port` for any CID, or an invalid fd (with `*why`
  // set) when this kernel has no vsock.
  static OwnedFd listen_vsock(std::uint32_t port, std::string* why);
  // A non-blocking unix stream listener at `path` (dry runs and tests of the listener path).
  static OwnedFd listen_unix(const std::filesystem::path& path);

  Kind kind() const { return kind_; }
  // The connection to the host; -1 while a listener has none.
  int fd() const { return connection_.get(); }
  // The listening socket; -1 unless kind() is listener.
  int listener_fd() const { return listener_.get(); }

  // Accepts one pending connection (non-blocking, close-on-exec), replacing the current one.
  // False when none was pending.
  bool accept_connection();
  // Closes the current connection (listener only; the others keep their fd).
  void close_connection();

 private:
  HostLink(Kind kind, OwnedFd connection, OwnedFd listener)
      : kind_(kind), connection_(std::move(connection)), listener_(std::move(listener)) {}

  Kind kind_;
  OwnedFd connection_;
  OwnedFd listener_;
};

}  // namespace fcvm::agent
