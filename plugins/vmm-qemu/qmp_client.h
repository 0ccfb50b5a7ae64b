// QmpClient: a synchronous client of QEMU's machine protocol (QMP) on a unix socket.
//
// Threading: one thread at a time. Every call is bounded by its timeout. Replies are
// matched to commands by id, so a reply that arrives after its command timed out is
// dropped rather than mistaken for the next one; asynchronous events (STOP, RESUME,
// SHUTDOWN, MIGRATION, ...) read while waiting are queued for take_events().
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm::qemu {

class QmpClient {
 public:
  QmpClient() = default;
  QmpClient(QmpClient&&) noexcept = default;
  QmpClient& operator=(QmpClient&&) noexcept = default;

  // Connects, reads the greeting and negotiates capabilities, all within `timeout`. While
  // the socket does not exist yet or nobody listens, fails at once with `unavailable`, so
  // a caller can retry while it watches the QEMU process.
  static Result<QmpClient> connect(const std::filesystem::path& socket,
                                   std::chrono::milliseconds timeout);

  bool connected() const { return sock_.valid(); }

  // Runs `command` with `arguments` (an object, or null for none) and returns its "return"
  // value. A QMP error becomes a Status carrying error.desc; a closed connection is `io`;
  // no reply within `timeout` is `timeout`. `fd`, when not -1, is passed along with the
  // command (SCM_RIGHTS), as `getfd` and `add-fd` expect.
  Result<nlohmann::json> execute(std::string_view command,
                                 const nlohmann::json& arguments = nullptr,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10),
                                 int fd = -1);

  // Events received so far, oldest first; the queue is emptied.
  std::vector<nlohmann::json> take_events();

  // The greeting's "QMP" object (version, capabilities).
  const nlohmann::json& greeting() const { return greeting_; }

  void close() { sock_.reset(); }

 private:
  using Clock = std::chrono::steady_clock;

  Status send_all(const std::string& data, int fd, Clock::time_point deadline);
  // Reads one message (a JSON object on its own line).
  Result<nlohmann::json> read_message(Clock::time_point deadline);

  UniqueFd sock_;
  std::string socket_path_;
  std::string in_;  // bytes read but not yet parsed
  std::deque<nlohmann::json> events_;
  nlohmann::json greeting_;
  std::uint64_t next_id_ = 1;
};

}  // namespace fcvm::qemu
