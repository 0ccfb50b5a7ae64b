// OutputChunk: bytes of one of the container's main-process streams, as they arrived.
#pragma once

#include <string>

namespace fcvm {

struct OutputChunk {
  bool is_stderr = false;
  std::string bytes;
  bool operator==(const OutputChunk&) const = default;
};

}  // namespace fcvm
