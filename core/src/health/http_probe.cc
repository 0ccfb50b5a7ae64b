#include "health/http_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <charconv>

namespace fcvm {
namespace {

constexpr std::size_t kMaxStatusLine = 4096;

std::string endpoint(const HttpUrl& url) { return url.host + ":" + std::to_string(url.port); }

}  // namespace

Result<HttpUrl> parse_http_url(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    return error(Errc::invalid_argument, "--health-url " + url + ": only http:// URLs are supported");
  }
  HttpUrl out;
  const std::string rest = url.substr(scheme.size());
  const auto slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) out.path = rest.substr(slash);
  const auto colon = authority.rfind(':');
  out.host = authority.substr(0, colon);
  if (colon != std::string::npos) {
    const std::string_view port = std::string_view(authority).substr(colon + 1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
      return error(Errc::invalid_argument, "--health-url " + url + ": bad port (1-65535)");
    }
    out.port = static_cast<std::uint16_t>(value);
  }
  if (out.host.empty()) return error(Errc::invalid_argument, "--health-url " + url + ": no host");
  return out;
}

Result<HttpProbe> HttpProbe::start(const std::string& text) {
  auto url = parse_http_url(text);
  if (!url) return url.status();
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(url->port);
  if (::inet_pton(AF_INET, url->host.c_str(), &sa.sin_addr) != 1) {
    return error(Errc::invalid_argument, "--health-url " + text + ": the host must be an IPv4 address or 'guest'");
  }
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) return errno_status("socket");
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) {
    return errno_status("connect " + endpoint(*url));
  }
  std::string request = "GET " + url->path + " HTTP/1.0\r\nHost: " + url->host + "\r\n\r\n";
  return HttpProbe(std::move(s), std::move(*url), std::move(request));
}

std::uint32_t HttpProbe::events() const { return step_ == Step::reading ? EPOLLIN : EPOLLOUT; }

std::optional<Status> HttpProbe::advance() {
  if (step_ == Step::connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(socket_.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == EINPROGRESS) return std::nullopt;
    if (err != 0) return errno_status("connect " + endpoint(url_), err);
    step_ = Step::sending;
  }
  if (step_ == Step::sending) {
    const ssize_t n = ::send(socket_.get(), request_.data() + sent_, request_.size() - sent_, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return std::nullopt;
    if (n < 0) return errno_status("send the request to " + endpoint(url_));
    sent_ += static_cast<std::size_t>(n);
    if (sent_ < request_.size()) return std::nullopt;
    step_ = Step::reading;
    return std::nullopt;
  }
  return read_status_line();
}

std::optional<Status> HttpProbe::read_status_line() {
  char buf[512];
  const ssize_t n = ::recv(socket_.get(), buf, sizeof buf, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return std::nullopt;
  if (n < 0) return errno_status("read the answer of " + endpoint(url_));
  head_.append(buf, static_cast<std::size_t>(n));
  if (n > 0 && head_.find("\r\n") == std::string::npos && head_.size() < kMaxStatusLine) return std::nullopt;
  // "HTTP/1.x NNN reason"; what comes after the status code does not matter.
  const auto sp = head_.find(' ');
  if (head_.rfind("HTTP/", 0) != 0 || sp == std::string::npos || head_.size() < sp + 4) {
    return error(Errc::protocol, endpoint(url_) + " sent no HTTP answer");
  }
  const std::string code = head_.substr(sp + 1, 3);
  if (code[0] == '2' || code[0] == '3') return ok_status();
  return error(Errc::unavailable, "HTTP status " + code);
}

Status http_probe(const std::string& url, std::chrono::milliseconds timeout) {
  auto probe = HttpProbe::start(url);
  if (!probe) return probe.status();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{probe->fd(), static_cast<short>(probe->events() == EPOLLIN ? POLLIN : POLLOUT), 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(0, left.count())));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return errno_status("poll");
    if (ready == 0) {
      return error(Errc::timeout, "no answer from " + url + " within " + std::to_string(timeout.count()) + " ms");
    }
    if (auto outcome = probe->advance()) return *outcome;
  }
}

}  // namespace fcvm
