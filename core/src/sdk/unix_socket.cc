#include "fcvm/unix_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace fcvm {

Result<UniqueFd> connect_unix_socket(const std::filesystem::path& path,
                                     std::chrono::steady_clock::time_point deadline,
                                     int give_up_fd) {
  using Clock = std::chrono::steady_clock;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string text = path.string();
  if (text.size() >= sizeof addr.sun_path) {
    return error(Errc::invalid_argument, "socket path is too long for a unix socket (" +
                                             std::to_string(text.size()) + " bytes): " + text);
  }
  std::memcpy(addr.sun_path, text.c_str(), text.size() + 1);
  // Short naps first: a VMM usually opens its sockets within milliseconds.
  auto nap = std::chrono::milliseconds(1);
  int last_errno = 0;
  for (;;) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return errno_status("socket(AF_UNIX)");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return fd;
    last_errno = errno;
    if (last_errno != ENOENT && last_errno != ECONNREFUSED && last_errno != EINTR &&
        last_errno != EAGAIN) {
      return errno_status("connect to " + text, last_errno);
    }
    const auto now = Clock::now();
    if (now >= deadline) break;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    pollfd p{give_up_fd, POLLIN, 0};
    const int n = ::poll(&p, give_up_fd >= 0 ? 1 : 0, static_cast<int>(std::min(nap, left).count()));
    if (n > 0) {
      return error(Errc::unavailable, "the process serving " + text + " exited before it accepted");
    }
    nap = std::min(nap * 2, std::chrono::milliseconds(20));
  }
  return error(Errc::timeout, text + " did not accept a connection in time (" +
                                  std::strerror(last_errno) + ")");
}

ssize_t send_with_fd(int sock, std::string_view bytes, int fd) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL);
}

}  // namespace fcvm
