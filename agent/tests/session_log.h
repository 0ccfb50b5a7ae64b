// Test helper: gathers what the agent reports per session from an AgentChannel.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent_channel.h"

namespace fcvm::agent_test {

// What one session produced.
struct SessionLog {
  bool started = false;
  std::int64_t pid = 0;
  std::string out, err;
  std::vector<std::string> errors;
  std::optional<agent::Exit> exit;
};

// Reads frames until every session in `sessions` has exited (or `timeout`); a failure to
// read is a test failure.
inline std::map<std::uint32_t, SessionLog> collect(
    AgentChannel& ch, const std::vector<std::uint32_t>& sessions,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  using agent::FrameType;
  std::map<std::uint32_t, SessionLog> logs;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto done = [&] {
    for (auto s : sessions) {
      if (!logs[s].exit) return false;
    }
    return true;
  };
  while (!done()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto f = ch.next_frame(std::max(left, std::chrono::milliseconds(0)));
    if (!f) {
      ADD_FAILURE() << f.status().message();
      break;
    }
    SessionLog& log = logs[f->session];
    std::string err;
    switch (f->type) {
      case FrameType::kStarted:
        log.started = true;
        if (auto s = agent::parse_started(f->payload, &err)) log.pid = s->pid;
        break;
      case FrameType::kStdout: log.out += f->payload; break;
      case FrameType::kStderr: log.err += f->payload; break;
      case FrameType::kError:
        if (auto e = agent::parse_error_message(f->payload, &err)) log.errors.push_back(e->message);
        break;
      case FrameType::kExit: log.exit = agent::parse_exit(f->payload, &err); break;
      default: break;
    }
  }
  return logs;
}

}  // namespace fcvm::agent_test
