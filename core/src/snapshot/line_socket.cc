#include "snapshot/line_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>

namespace fcvm {
namespace {

Result<sockaddr_un> address_of(const std::filesystem::path& socket) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const auto path = socket.string();
  if (path.size() >= sizeof addr.sun_path) {
    return error(Errc::invalid_argument, "socket path too long: " + path);
  }
  std::copy(path.begin(), path.end(), addr.sun_path);
  return addr;
}

}  // namespace

Result<UniqueFd> listen_line_socket(const std::filesystem::path& path) {
  auto addr = address_of(path);
  if (!addr) return addr.status();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  ::unlink(path.c_str());
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&*addr), sizeof *addr) != 0 ||
      ::listen(fd.get(), 16) != 0) {
    return errno_status("listen on " + path.string());
  }
  ::chmod(path.c_str(), 0600);
  return fd;
}

Result<UniqueFd> connect_line_socket(const std::filesystem::path& path, const std::string& what) {
  auto addr = address_of(path);
  if (!addr) return addr.status();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&*addr), sizeof *addr) != 0) {
    return errno_status("connect to " + path.string() + " (" + what + ")");
  }
  return fd;
}

Result<std::string> read_socket_line(int fd) {
  std::string line;
  char c;
  while (line.size() < kMaxSocketLine) {
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("read a request line");
    if (n == 0) return error(Errc::io, "the peer closed the connection");
    if (c == '\n') return line;
    line += c;
  }
  return error(Errc::invalid_argument, "line longer than " + std::to_string(kMaxSocketLine) + " bytes");
}

Status write_socket_line(int fd, const std::string& text) {
  const std::string line = text + "\n";
  for (size_t done = 0; done < line.size();) {
    ssize_t n = ::send(fd, line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_status("write");
    done += static_cast<size_t>(n);
  }
  return ok_status();
}

}  // namespace fcvm
