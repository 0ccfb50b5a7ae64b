#include "vsock_connector.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

namespace fcvm::firecracker {
namespace {

using std::chrono::milliseconds;

// "OK 4294967295\n" is 14 bytes; anything past 32 is not Firecracker's reply.
constexpr std::size_t kMaxReply = 32;

int ms_left(VsockConnector::Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - VsockConnector::Clock::now());
  return static_cast<int>(std::clamp<long long>(left.count(), 0, 60'000));
}

std::string printable(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else {
      out += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
  }
  return out;
}

// "OK <digits>\n" with a value that fits in 32 bits.
bool is_ok_reply(const std::string& line) {
  if (line.size() < 5 || line.compare(0, 3, "OK ") != 0 || line.back() != '\n') return false;
  const std::string digits = line.substr(3, line.size() - 4);
  if (digits.empty() || digits.size() > 10) return false;
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  return std::stoull(digits) <= 0xffffffffULL;
}

}  // namespace

Result<UniqueFd> VsockConnector::connect_once(const std::filesystem::path& uds, std::uint32_t port,
                                              Clock::time_point deadline) {
  const std::string who = "vsock " + uds.string() + " port " + std::to_string(port) + ": ";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (uds.string().size() >= sizeof(addr.sun_path)) {
    return error(Errc::invalid_argument, who + "socket path longer than " +
                                             std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::strncpy(addr.sun_path, uds.c_str(), sizeof(addr.sun_path) - 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_status(who + "socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      return error(Errc::unavailable, who + "nothing listens yet (" + std::strerror(err) + ")");
    }
    return errno_status(who + "connect", err);
  }
  const std::string request = "CONNECT " + std::to_string(port) + "\n";
  if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    const int err = errno;
    if (err == EPIPE || err == ECONNRESET) {
      return error(Errc::unavailable, who + "closed before the CONNECT line was sent");
    }
    return errno_status(who + "send CONNECT", err);
  }
  std::string reply;
  while (reply.size() < kMaxReply) {
    pollfd p{fd.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, ms_left(deadline));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return errno_status(who + "poll");
    }
    if (ready == 0) {
      return error(Errc::timeout, who + "no reply to CONNECT before the deadline" +
                                      (reply.empty() ? "" : " (got '" + printable(reply) + "')"));
    }
    char c = 0;
    const ssize_t n = ::recv(fd.get(), &c, 1, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == ECONNRESET && reply.empty()) {
        return error(Errc::unavailable, who + "the guest is not listening yet (connection reset)");
      }
      return errno_status(who + "read reply");
    }
    if (n == 0) {
      if (reply.empty()) {
        return error(Errc::unavailable, who + "the guest is not listening yet (closed without reply)");
      }
      return error(Errc::protocol, who + "connection closed in the middle of the reply '" +
                                       printable(reply) + "'");
    }
    reply += c;
    if (c == '\n') break;
  }
  if (!is_ok_reply(reply)) {
    return error(Errc::protocol, who + "expected 'OK <port>\\n' after CONNECT, got '" +
                                     printable(reply) + "'");
  }
  return fd;
}

Result<UniqueFd> VsockConnector::connect(const std::filesystem::path& uds, std::uint32_t port,
                                         Clock::time_point deadline,
                                         const std::function<Status()>& still_alive) {
  auto nap = milliseconds(5);
  for (;;) {
    auto fd = connect_once(uds, port, deadline);
    if (fd || fd.status().code() != Errc::unavailable) return fd;
    if (still_alive) FCVM_RETURN_IF_ERROR(still_alive());
    if (Clock::now() + nap >= deadline) {
      return error(Errc::timeout, fd.status().message() + "; gave up at the deadline");
    }
    // Polling is the protocol here: Firecracker gives no event when the guest starts listening.
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, milliseconds(100));
  }
}

}  // namespace fcvm::firecracker
