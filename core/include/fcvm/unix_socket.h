// Unix stream sockets to and from child processes (VMMs): connecting to a socket the child
// is about to open, and handing it a file descriptor.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string_view>

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

// One sendmsg(2) of `bytes` on the stream socket `sock` (MSG_NOSIGNAL), with `fd` attached
// as SCM_RIGHTS ancillary data when it is >= 0: the receiver gets its own descriptor with
// the first byte it reads. Returns what sendmsg returned, the bytes sent or -1 with errno
// set, so each caller retries EINTR/EAGAIN and short writes as its loop needs (the fd goes
// with the first call only). Thread-safe; never throws.
FCVM_SDK_API ssize_t send_with_fd(int sock, std::string_view bytes, int fd);

}  // namespace fcvm
