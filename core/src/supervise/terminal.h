// The host's terminal, for `-t`: its size (sent to the guest's pseudo-terminal) and raw
// mode, so that every key (Ctrl-C included) reaches the guest's line discipline instead of
// ours.
//
// Threading: any thread; RawTerminal belongs to the thread that made it.
#pragma once

#include <termios.h>

#include <optional>

#include <fcvm/agent_protocol.h>

namespace fcvm {

// The window size of the terminal `fd`, or nullopt when it is not a terminal.
std::optional<agent::WindowSize> terminal_size(int fd);

// The size a guest terminal starts with: our stdin's terminal, else stdout's, else 24x80
// (podman's default without a host terminal).
agent::WindowSize initial_terminal_size();

// Puts a terminal into raw mode for its lifetime and restores the saved settings on
// destruction, whatever the exit path (errors, signals turned into a stop; not SIGKILL).
class RawTerminal {
 public:
  // Raw mode on `fd` when it is a terminal; nullopt (nothing changed) otherwise.
  static std::optional<RawTerminal> enter(int fd);
  RawTerminal(RawTerminal&& other) noexcept : fd_(other.fd_), saved_(other.saved_) { other.fd_ = -1; }
  RawTerminal& operator=(RawTerminal&&) = delete;
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  ~RawTerminal();

 private:
  RawTerminal(int fd, const termios& saved) : fd_(fd), saved_(saved) {}
  int fd_;
  termios saved_;
};

}  // namespace fcvm
