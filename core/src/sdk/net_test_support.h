// Shared by the networking tests (SDK and plugins): unique names, and a one-shot TCP
// responder opened inside a namespace, so tests need no server binary and no waiting: the
// socket listens before the test connects.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include "fcvm/netns.h"
#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm::testing {

// "<prefix><pid in hex><n>", at most 15 characters, unique per test process.
inline std::string unique_ifname(const std::string& prefix, int n = 0) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%x%d", static_cast<unsigned>(::getpid()) & 0xfffff, n);
  return (prefix + buf).substr(0, 15);
}

inline bool is_root() { return ::geteuid() == 0; }

// A VM id as the state store makes them: 12 hex digits.
inline std::string random_vm_id() {
  std::random_device rd;
  char buf[13];
  std::snprintf(buf, sizeof buf, "%06x%06x", rd() & 0xffffff, rd() & 0xffffff);
  return buf;
}

inline sockaddr_in ipv4_sockaddr(const std::string& ip, std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &sa.sin_addr);
  return sa;
}

// A TCP port on 127.0.0.1 that nothing listens on now (the kernel picks it).
inline std::uint16_t free_tcp_port() {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa = ipv4_sockaddr("127.0.0.1", 0);
  ::bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  return ntohs(sa.sin_port);
}

// Listens on ip:port (in `ns` when given) and answers each connection with
// "<greeting> from-peer=<client address>\n", until destroyed.
class TcpResponder {
 public:
  TcpResponder(const Netns* ns, const std::string& ip, std::uint16_t port, std::string greeting)
      : greeting_(std::move(greeting)) {
    auto open = [&] {
      listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      int one = 1;
      ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in sa = ipv4_sockaddr(ip, port);
      if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
          ::listen(listener_.get(), 8) != 0) {
        return errno_status("listen on " + ip + ":" + std::to_string(port));
      }
      return ok_status();
    };
    status_ = ns ? ns->run_in(open) : open();
    if (status_.ok()) thread_ = std::thread([this] { serve(); });
  }
  ~TcpResponder() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
  }
  const Status& status() const { return status_; }

 private:
  void serve() {
    for (;;) {
      sockaddr_in peer{};
      socklen_t len = sizeof peer;
      UniqueFd conn(::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
      if (!conn) return;
      char addr[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof addr);
      const std::string reply = greeting_ + " from-peer=" + addr + "\n";
      ssize_t ignored = ::write(conn.get(), reply.data(), reply.size());
      (void)ignored;
    }
  }
  std::string greeting_;
  UniqueFd listener_;
  Status status_;
  std::thread thread_;
};

// Connects to ip:port (from `ns` when given) and reads until EOF.
inline Result<std::string> tcp_fetch(const Netns* ns, const std::string& ip, std::uint16_t port) {
  std::string out;
  auto fetch = [&] {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa = ipv4_sockaddr(ip, port);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      return errno_status("connect " + ip + ":" + std::to_string(port));
    }
    char buf[512];
    for (ssize_t n; (n = ::read(s.get(), buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    return ok_status();
  };
  Status st = ns ? ns->run_in(fetch) : fetch();
  if (!st.ok()) return st;
  return out;
}

}  // namespace fcvm::testing
