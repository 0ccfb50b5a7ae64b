// ApiClient: Firecracker's HTTP/1.1 API over its unix socket (Boost.Beast on Boost.Asio
// local stream sockets).
//
// Threading: an object holds only the socket path; calls may run from any thread, each on
// its own connection and io_context. Every call is bounded by its timeout.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "api_request.h"
#include "fcvm/result.h"

namespace fcvm::firecracker {

struct ApiResponse {
  unsigned status = 0;  // HTTP status code
  std::string body;
};

class ApiClient {
 public:
  ApiClient() = default;
  explicit ApiClient(std::filesystem::path socket) : socket_(std::move(socket)) {}

  const std::filesystem::path& socket() const { return socket_; }

  // Sends one request on a fresh connection and reads the whole response (bodies over
  // 1 MiB are refused). Errors: unavailable when nothing listens on the socket yet
  // (ENOENT, ECONNREFUSED); io when the connection breaks (Firecracker died mid-call);
  // timeout after `timeout`; protocol for a malformed response. Never throws.
  Result<ApiResponse> send(const ApiRequest& request, std::chrono::milliseconds timeout) const;

  // send(), then maps any non-2xx answer to an error naming the call and quoting
  // Firecracker's fault_message: "PUT /drives/root: Firecracker answered 400 Bad Request:
  // <fault_message>" (400: invalid_argument; other codes: io). Returns the 2xx body.
  Result<std::string> call(const ApiRequest& request, std::chrono::milliseconds timeout) const;

  // The error call() gives for a non-2xx response. Exposed for tests.
  static Status fault(const ApiRequest& request, const ApiResponse& response);

 private:
  std::filesystem::path socket_;
};

}  // namespace fcvm::firecracker
