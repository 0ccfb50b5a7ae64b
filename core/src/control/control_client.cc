#include "control/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

namespace fcvm::control {

Result<ControlClient> ControlClient::connect(const std::filesystem::path& socket) {
  const std::string path = socket.string();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return error(Errc::invalid_argument, "control socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_status("socket(AF_UNIX)");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return error(Errc::unavailable, "cannot reach the control socket " + path + ": " + std::strerror(errno));
  }
  return ControlClient(std::move(fd));
}

Status ControlClient::send(MessageType type, std::string_view payload) {
  std::string bytes;
  FCVM_RETURN_IF_ERROR(append_message(bytes, type, payload));
  for (std::size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("write to the control socket");
    done += static_cast<std::size_t>(n);
  }
  return ok_status();
}

Status ControlClient::queue(MessageType type, std::string_view payload) {
  FCVM_RETURN_IF_ERROR(append_message(out_, type, payload));
  return write_queued();
}

Status ControlClient::write_queued() {
  while (!out_.empty()) {
    const ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {
      out_.clear();  // the server is gone: nothing queued can reach it any more
      return errno_status("write to the control socket");
    }
    out_.erase(0, static_cast<std::size_t>(n));
  }
  return ok_status();
}

Result<std::vector<Message>> ControlClient::receive() {
  std::vector<Message> out;
  if (closed_) return out;
  char buf[65536];
  ssize_t n;
  do {
    n = ::recv(fd_.get(), buf, sizeof buf, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != ECONNRESET) return errno_status("read from the control socket");
  if (n <= 0) {
    closed_ = true;
    return out;
  }
  FCVM_RETURN_IF_ERROR(decoder_.feed(std::string_view(buf, static_cast<std::size_t>(n)), out));
  return out;
}

Result<Reply> ControlClient::wait_reply(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!closed_) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd_.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::max<long long>(0, left.count())));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("poll the control socket");
    if (n == 0) return error(Errc::timeout, "the VM's fcvm process did not answer on its control socket");
    auto messages = receive();
    if (!messages) return messages.status();
    for (const auto& m : *messages) {
      if (m.type == MessageType::kReply) return parse_reply(m.payload);
    }
  }
  return error(Errc::io, "the VM's fcvm process closed the control socket without a reply");
}

}  // namespace fcvm::control
