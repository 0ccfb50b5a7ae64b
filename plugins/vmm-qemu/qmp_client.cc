#include "qmp_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "fcvm/unix_socket.h"

namespace fcvm::qemu {
namespace {

// Most events are small; one that never ends in a newline is a broken peer, not QEMU.
constexpr size_t kMaxMessage = 16 * 1024 * 1024;
constexpr size_t kMaxQueuedEvents = 1024;

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  // Round up so a sub-millisecond remainder still polls once.
  return left.count() <= 0 ? 0 : static_cast<int>(left.count()) + 1;
}

Errc code_for_class(const std::string& cls) {
  if (cls == "CommandNotFound") return Errc::unavailable;
  if (cls == "DeviceNotFound") return Errc::not_found;
  return Errc::io;
}

}  // namespace

Result<QmpClient> QmpClient::connect(const std::filesystem::path& socket,
                                     std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = socket.string();
  if (path.size() >= sizeof addr.sun_path) {
    return error(Errc::invalid_argument, "QMP socket path " + path + " is too long");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

  QmpClient client;
  client.socket_path_ = path;
  client.sock_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!client.sock_) return errno_status("socket");
  if (::connect(client.sock_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED || err == EAGAIN) {
      return error(Errc::unavailable, "QMP socket " + path + ": " + std::strerror(err));
    }
    if (err != EINPROGRESS) return errno_status("connect " + path, err);
  }

  auto greeting = client.read_message(deadline);
  if (!greeting) return greeting.status().with_context("QMP greeting: ");
  if (!greeting->contains("QMP")) {
    return error(Errc::protocol, "QMP socket " + path + " sent no greeting: " + greeting->dump());
  }
  client.greeting_ = (*greeting)["QMP"];
  auto caps = client.execute("qmp_capabilities", nullptr,
                             std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  if (!caps) return caps.status();
  return client;
}

Result<nlohmann::json> QmpClient::execute(std::string_view command,
                                          const nlohmann::json& arguments,
                                          std::chrono::milliseconds timeout, int fd) {
  const std::string name(command);
  if (!sock_) return error(Errc::io, "QMP " + name + ": not connected");
  const auto deadline = Clock::now() + timeout;
  const std::uint64_t id = next_id_++;
  nlohmann::json request = {{"execute", name}, {"id", id}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  FCVM_RETURN_IF_ERROR(send_all(request.dump() + "\n", fd, deadline).with_context("QMP " + name + ": "));

  for (;;) {
    auto message = read_message(deadline);
    if (!message) {
      // A half-read reply would desynchronise the stream; a timeout leaves it intact
      // because replies are matched by id.
      return message.status().with_context("QMP " + name + ": ");
    }
    nlohmann::json& m = *message;
    if (m.contains("event")) {
      if (events_.size() == kMaxQueuedEvents) events_.pop_front();
      events_.push_back(std::move(m));
      continue;
    }
    auto it = m.find("id");
    if (it == m.end() || *it != id) continue;  // a reply to an earlier, abandoned command
    if (m.contains("return")) return m["return"];
    if (m.contains("error")) {
      const auto& e = m["error"];
      std::string desc = e.value("desc", e.dump());
      return error(code_for_class(e.value("class", "")), "QMP " + name + ": " + desc);
    }
    return error(Errc::protocol, "QMP " + name + ": reply without return or error: " + m.dump());
  }
}

std::vector<nlohmann::json> QmpClient::take_events() {
  std::vector<nlohmann::json> out(std::make_move_iterator(events_.begin()),
                                  std::make_move_iterator(events_.end()));
  events_.clear();
  return out;
}

Status QmpClient::send_all(const std::string& data, int fd, Clock::time_point deadline) {
  size_t sent = 0;
  bool fd_pending = fd >= 0;
  while (sent < data.size()) {
    const ssize_t n = send_with_fd(sock_.get(), std::string_view(data).substr(sent),
                                   fd_pending ? fd : -1);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      fd_pending = false;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{sock_.get(), POLLOUT, 0};
      int ms = remaining_ms(deadline);
      if (ms == 0 || ::poll(&p, 1, ms) == 0) return error(Errc::timeout, "send timed out");
      continue;
    }
    Status st = errno_status("send");
    sock_.reset();
    return st;
  }
  return ok_status();
}

Result<nlohmann::json> QmpClient::read_message(Clock::time_point deadline) {
  for (;;) {
    const auto newline = in_.find('\n');
    if (newline != std::string::npos) {
      std::string line = in_.substr(0, newline);
      in_.erase(0, newline + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        return error(Errc::protocol, "malformed message: " + line.substr(0, 200));
      }
      return j;
    }
    if (in_.size() > kMaxMessage) {
      sock_.reset();
      return error(Errc::protocol, "message longer than 16 MiB");
    }
    if (!sock_) return error(Errc::io, "connection closed");
    pollfd p{sock_.get(), POLLIN, 0};
    const int ms = remaining_ms(deadline);
    if (ms == 0) return error(Errc::timeout, "no reply in time");
    int r = ::poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_status("poll");
    if (r == 0) return error(Errc::timeout, "no reply in time");
    char buf[65536];
    ssize_t n = ::recv(sock_.get(), buf, sizeof buf, 0);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      sock_.reset();
      return error(Errc::io, "connection closed by QEMU");
    } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
      Status st = errno_status("recv");
      sock_.reset();
      return st;
    }
  }
}

}  // namespace fcvm::qemu
