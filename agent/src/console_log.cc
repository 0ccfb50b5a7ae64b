#include "console_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace fcvm::agent {
namespace {
int g_log_fd = STDERR_FILENO;
}

void open_console_log() {
  const int fd = ::open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (fd >= 0) g_log_fd = fd;
}

void log_line(std::string_view message) {
  std::string line = "fc-agent: ";
  line.append(message);
  line.push_back('\n');
  std::string_view rest = line;
  while (!rest.empty()) {
    const ssize_t n = ::write(g_log_fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere else to report to
    rest.remove_prefix(static_cast<size_t>(n));
  }
}

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace fcvm::agent
