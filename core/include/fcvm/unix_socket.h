// Connecting to a unix stream socket that a child process (a VMM) is about to open.
#pragma once

#include <chrono>
#include <filesystem>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "fcvm/visibility.h"

namespace fcvm {

// Connects to the unix stream socket at `path`, retrying while it does not exist yet or
// refuses (its server is still starting) until `deadline`. When `give_up_fd` is valid (a
// pidfd of the server process) the wait also ends, with Errc::unavailable, once it becomes
// readable (the server exited). Returns a blocking, close-on-exec socket the caller owns.
// Errors: invalid_argument (path too long for sun_path), timeout (names the socket and the
// last connect error), unavailable, io. Thread-safe; never throws.
FCVM_SDK_API Result<UniqueFd> connect_unix_socket(const std::filesystem::path& path,
                                                  std::chrono::steady_clock::time_point deadline,
                                                  int give_up_fd = -1);

}  // namespace fcvm
