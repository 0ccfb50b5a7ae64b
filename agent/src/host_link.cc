#include "host_link.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <linux/vm_sockets.h>

#include "setup_error.h"

namespace fcvm::agent {

HostLink HostLink::serial_port(OwnedFd port) { return HostLink(Kind::serial_port, std::move(port), {}); }
HostLink HostLink::listener(OwnedFd listening_socket) {
  return HostLink(Kind::listener, {}, std::move(listening_socket));
}
HostLink HostLink::connected(OwnedFd stream) { return HostLink(Kind::connected, std::move(stream), {}); }

OwnedFd HostLink::listen_vsock(std::uint32_t port, std::string* why) {
  OwnedFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    if (why) *why = std::string("socket(AF_VSOCK): ") + std::strerror(errno);
    return {};
  }
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd.get(), 4) != 0) {
    if (why) *why = "listen on vsock port " + std::to_string(port) + ": " + std::strerror(errno);
    return {};
  }
  return fd;
}

OwnedFd HostLink::listen_unix(const std::filesystem::path& path) {
  OwnedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket(AF_UNIX)");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof addr.sun_path) throw SetupError("socket path too long: " + path.string());
  std::strcpy(addr.sun_path, path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd.get(), 4) != 0) {
    throw_errno("listen on " + path.string());
  }
  return fd;
}

bool HostLink::accept_connection() {
  if (!listener_) return false;
  for (;;) {
    const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      connection_.reset(fd);
      return true;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
    throw_errno("accept a host connection");
  }
}

void HostLink::close_connection() {
  if (kind_ == Kind::listener) connection_.reset();
}

}  // namespace fcvm::agent
