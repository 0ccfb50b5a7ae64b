// AgentPair, for unit tests of the supervisor's parts: an AgentChannel whose other end is
// the test, playing the guest agent on the same thread (a socketpair, so the real channel
// and the real framing). Test-only; asserts with gtest.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include <fcvm/agent_protocol.h>

#include "agent/agent_channel.h"

namespace fcvm {

class AgentPair {
 public:
  AgentPair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    guest_.reset(fds[1]);
    auto channel = AgentChannel::adopt(UniqueFd(fds[0]));
    EXPECT_TRUE(channel.ok()) << channel.status().message();
    if (channel.ok()) host_.emplace(std::move(*channel));
  }

  // The host's end, for the part under test.
  AgentChannel& host() { return *host_; }
  int guest_fd() const { return guest_.get(); }

  // Every frame the host sent since the last call, oldest first: the host's queue is
  // written out as the guest end reads.
  std::vector<agent::Frame> frames() {
    std::vector<agent::Frame> out;
    for (;;) {
      EXPECT_TRUE(host_->on_writable().ok());
      char buf[65536];
      bool read_any = false;
      for (ssize_t n; (n = ::read(guest_.get(), buf, sizeof buf)) > 0;) {
        read_any = true;
        EXPECT_TRUE(decoder_.feed(std::string_view(buf, static_cast<std::size_t>(n)), out));
      }
      if (!read_any && host_->pending() == 0) return out;
    }
  }
  // The frames of one type among frames().
  std::vector<agent::Frame> frames_of(agent::FrameType type) {
    std::vector<agent::Frame> of;
    for (auto& f : frames()) {
      if (f.type == type) of.push_back(std::move(f));
    }
    return of;
  }

 private:
  UniqueFd guest_;
  std::optional<AgentChannel> host_;
  agent::FrameDecoder decoder_{agent::Direction::kHostToGuest};
};

// The payload bytes of `frames`, joined.
inline std::string joined_payloads(const std::vector<agent::Frame>& frames) {
  std::string all;
  for (const auto& f : frames) all += f.payload;
  return all;
}

}  // namespace fcvm
