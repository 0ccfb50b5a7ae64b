// HttpProbe: one HTTP/1.0 GET of an http:// URL with an IPv4 host, for --health-url.
//
// The probe is a small non-blocking state machine (connect, send the request, read the
// status line) driven by its owner's event loop, so a health check never blocks the VM's
// one loop; the owner enforces the timeout (destroying the probe closes its socket).
// In-loop rather than in a child process: a probe is one socket and a few bytes, and a
// child of the VM's process would inherit its fds and need reaping.
//
// Threading: one thread owns a probe. Nothing here throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm {

struct HttpUrl {
  std::string host;
  std::uint16_t port = 80;
  std::string path = "/";
};

// "http://HOST[:PORT][/PATH]". invalid_argument naming --health-url and what is wrong.
Result<HttpUrl> parse_http_url(const std::string& url);

class HttpProbe {
 public:
  // Starts connecting to `url` (its host must be an IPv4 address). Errors: a malformed URL
  // (invalid_argument), socket or connect failures found at once (io).
  static Result<HttpProbe> start(const std::string& url);

  HttpProbe(HttpProbe&&) noexcept = default;
  HttpProbe& operator=(HttpProbe&&) noexcept = default;

  // The socket, owned by the probe: watch it for events().
  int fd() const { return socket_.get(); }
  // EPOLLOUT while connecting or sending, EPOLLIN while waiting for the answer.
  std::uint32_t events() const;

  // Call when fd() is ready. nullopt while the exchange goes on; else its outcome: ok for
  // a 2xx or 3xx status; a refused connection (io), a non-HTTP answer (protocol) or any
  // other status (unavailable, "HTTP status 503") otherwise.
  std::optional<Status> advance();

 private:
  enum class Step { connecting, sending, reading };
  HttpProbe(UniqueFd socket, HttpUrl url, std::string request)
      : socket_(std::move(socket)), url_(std::move(url)), request_(std::move(request)) {}
  std::optional<Status> read_status_line();

  UniqueFd socket_;
  HttpUrl url_;
  std::string request_;
  std::size_t sent_ = 0;
  std::string head_;
  Step step_ = Step::connecting;
};

// The same GET, blocking up to `timeout` (Errc::timeout when it passes); for callers with
// no event loop (`fcvm healthcheck run`, tests).
Status http_probe(const std::string& url, std::chrono::milliseconds timeout);

}  // namespace fcvm
