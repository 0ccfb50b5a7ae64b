// Failure of a guest set-up step (mount, network, spawn). Thrown inside the agent only and
// turned into an ERROR frame by the event loop; the message names the step and the object.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

#include "console_log.h"

namespace fcvm::agent {

class SetupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws SetupError("<what>: <strerror(errno)>"); call right after the failing syscall.
[[noreturn]] inline void throw_errno(const std::string& what) {
  const int err = errno;
  throw SetupError(what + ": " + errno_text(err));
}

}  // namespace fcvm::agent
