#include "supervise/terminal.h"

#include <sys/ioctl.h>
#include <unistd.h>

namespace fcvm {

std::optional<agent::WindowSize> terminal_size(int fd) {
  winsize ws{};
  if (!::isatty(fd) || ::ioctl(fd, TIOCGWINSZ, &ws) != 0) return std::nullopt;
  return agent::WindowSize{ws.ws_row, ws.ws_col};
}

agent::WindowSize initial_terminal_size() {
  if (auto size = terminal_size(STDIN_FILENO)) return *size;
  if (auto size = terminal_size(STDOUT_FILENO)) return *size;
  return agent::WindowSize{};
}

std::optional<RawTerminal> RawTerminal::enter(int fd) {
  termios saved{};
  if (!::isatty(fd) || ::tcgetattr(fd, &saved) != 0) return std::nullopt;
  termios raw = saved;
  ::cfmakeraw(&raw);
  if (::tcsetattr(fd, TCSADRAIN, &raw) != 0) return std::nullopt;
  return RawTerminal(fd, saved);
}

RawTerminal::~RawTerminal() {
  if (fd_ >= 0) ::tcsetattr(fd_, TCSADRAIN, &saved_);
}

}  // namespace fcvm
