// libFuzzer target: the handshake parser must reject or accept any bytes without crashing,
// and whatever it accepts must satisfy the invariants the server relies on.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "guest_region.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::uint64_t kImage = std::uint64_t{1} << 30;
  auto regions = fcvm::uffd::parse_handshake(
      std::string_view(reinterpret_cast<const char*>(data), size), kImage, 4096);
  if (!regions) return 0;
  std::uint64_t prev_end = 0;
  for (const auto& r : *regions) {
    if (r.size == 0 || r.page_size < 4096 || (r.page_size & (r.page_size - 1)) ||
        r.base % r.page_size || r.size % r.page_size || r.offset + r.size > kImage ||
        r.end() < r.base || r.base < prev_end) {
      std::abort();
    }
    prev_end = r.end();
  }
  return 0;
}
