#include "fcvm/result.h"

namespace fcvm {

const char* to_string(Errc code) noexcept {
  switch (code) {
    case Errc::ok: return "ok";
    case Errc::invalid_argument: return "invalid argument";
    case Errc::not_found: return "not found";
    case Errc::already_exists: return "already exists";
    case Errc::unavailable: return "unavailable";
    case Errc::io: return "I/O error";
    case Errc::timeout: return "timeout";
    case Errc::protocol: return "protocol error";
    case Errc::internal: return "internal error";
  }
  return "unknown error";
}

}  // namespace fcvm
