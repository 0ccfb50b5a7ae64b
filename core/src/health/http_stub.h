// HttpStub: a loopback HTTP server for the health check tests, answering every request
// with one fixed reply (or, with an empty reply, holding the connection unanswered).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <thread>

#include "fcvm/unique_fd.h"

namespace fcvm {

class HttpStub {
 public:
  explicit HttpStub(std::string reply) : reply_(std::move(reply)) {
    listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    ::listen(listener_.get(), 4);
    socklen_t len = sizeof sa;
    ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        UniqueFd c(::accept(listener_.get(), nullptr, nullptr));
        if (!c) return;
        char buf[1024];
        if (::recv(c.get(), buf, sizeof buf, 0) <= 0) continue;
        if (reply_.empty()) {
          held_ = std::move(c);  // never answer
          continue;
        }
        (void)::send(c.get(), reply_.data(), reply_.size(), MSG_NOSIGNAL);
      }
    });
  }
  ~HttpStub() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    thread_.join();
  }
  std::string url(const std::string& path = "/") const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

 private:
  std::string reply_;
  UniqueFd listener_, held_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace fcvm
