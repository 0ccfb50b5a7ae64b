// FirecrackerVersion: which Firecracker releases speak the API this plugin uses.
//
// The plugin sends vsock_override on /snapshot/load, added in Firecracker 1.16, and was
// checked against the API description of 1.17.0-dev (shared/firecracker/firecracker.yaml).
// Firecracker keeps its API backward compatible within a major version, so any 1.x with
// x >= 16 is accepted and another major is refused.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "fcvm/result.h"

namespace fcvm::firecracker {

struct FirecrackerVersion {
  unsigned major = 0;
  unsigned minor = 0;
  unsigned patch = 0;

  static constexpr unsigned kMajor = 1;
  static constexpr unsigned kMinMinor = 16;

  // Parses the output of `firecracker --version` ("Firecracker v1.16.1\n\n") or the
  // firecracker_version of GET /version ("1.16.1"); a suffix ("-dev") is ignored.
  static std::optional<FirecrackerVersion> parse(std::string_view text);

  // ok when this plugin can drive that release; else unavailable naming both versions.
  Status check() const;

  std::string to_string() const;
};

}  // namespace fcvm::firecracker
