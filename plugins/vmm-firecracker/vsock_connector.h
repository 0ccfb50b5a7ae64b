// VsockConnector: the host side of a Firecracker vsock connection to a guest port.
//
// Firecracker's vsock device is backed on the host by a unix socket (the device's
// uds_path). The host connects to it and writes "CONNECT <port>\n"; once the guest accepts
// on that AF_VSOCK port, Firecracker answers "OK <host port>\n" and from then on the socket
// carries the guest's stream. When nothing listens on the guest port yet, Firecracker
// closes the connection without a reply.
//
// Threading: stateless; any thread. The fd returned belongs to the caller.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm::firecracker {

class VsockConnector {
 public:
  using Clock = std::chrono::steady_clock;

  // One attempt. Errors: unavailable when the guest (or Firecracker) is not listening yet
  // (no socket, refused, or closed before any reply byte) - worth retrying; protocol for
  // any reply other than "OK <u32>\n" (at most 32 bytes are read, one at a time, so no
  // byte of the guest's stream is consumed); timeout at `deadline`.
  static Result<UniqueFd> connect_once(const std::filesystem::path& uds, std::uint32_t port,
                                       Clock::time_point deadline);

  // Retries connect_once while it fails with unavailable, until `deadline` (backing off
  // from 5 ms to 100 ms between attempts). `still_alive`, when given, is asked before each
  // retry; its error (the VMM exited) ends the wait. The last unavailable error becomes a
  // timeout naming the socket and port.
  static Result<UniqueFd> connect(const std::filesystem::path& uds, std::uint32_t port,
                                  Clock::time_point deadline,
                                  const std::function<Status()>& still_alive = {});
};

}  // namespace fcvm::firecracker
