// One-line-per-message unix sockets, as the serve process's control socket speaks them
// (serve_control.h): each side writes one line (no newline inside) and reads one.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm {

inline constexpr std::size_t kMaxSocketLine = 4096;

// A non-blocking, close-on-exec listening socket at `path` (a leftover file there is
// replaced), mode 0600. The caller unlinks `path` when done.
Result<UniqueFd> listen_line_socket(const std::filesystem::path& path);
// A blocking, close-on-exec connection to `path`; `what` names the server for the error
// ("is the VM running?").
Result<UniqueFd> connect_line_socket(const std::filesystem::path& path, const std::string& what);
// One line without its newline. Blocking; set SO_RCVTIMEO to bound it. invalid_argument
// past kMaxSocketLine bytes, io when the peer closes first.
Result<std::string> read_socket_line(int fd);
// `text` and a newline, whole. Blocking; never raises SIGPIPE.
Status write_socket_line(int fd, const std::string& text);

}  // namespace fcvm
