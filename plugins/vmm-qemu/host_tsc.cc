#include "host_tsc.h"

#include <time.h>

#include <cstdint>
#include <fstream>
#include <string>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace fcvm::qemu {
namespace {

bool has_constant_tsc() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) {
      return line.find(" constant_tsc") != std::string::npos &&
             line.find(" nonstop_tsc") != std::string::npos;
    }
  }
  return false;
}

#if defined(__x86_64__)
// One (tsc, ns) pair, taken where the two reads were closest together, so that a
// preemption between them does not skew the result.
void sample(std::uint64_t* tsc, std::int64_t* ns) {
  std::uint64_t best_gap = UINT64_MAX;
  for (int i = 0; i < 8; ++i) {
    timespec t{};
    const std::uint64_t before = __rdtsc();
    clock_gettime(CLOCK_MONOTONIC_RAW, &t);
    const std::uint64_t after = __rdtsc();
    if (after - before < best_gap) {
      best_gap = after - before;
      *tsc = before + (after - before) / 2;
      *ns = static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
    }
  }
}
#endif

}  // namespace

unsigned HostTsc::measure_khz() {
#if defined(__x86_64__)
  if (!has_constant_tsc()) return 0;
  std::uint64_t tsc0 = 0, tsc1 = 0;
  std::int64_t ns0 = 0, ns1 = 0;
  sample(&tsc0, &ns0);
  const timespec window{0, 20 * 1000 * 1000};
  nanosleep(&window, nullptr);
  sample(&tsc1, &ns1);
  if (ns1 <= ns0 || tsc1 <= tsc0) return 0;
  return static_cast<unsigned>(static_cast<double>(tsc1 - tsc0) * 1e6 / static_cast<double>(ns1 - ns0) + 0.5);
#else
  return 0;
#endif
}

unsigned HostTsc::khz() {
  static const unsigned cached = measure_khz();
  return cached;
}

}  // namespace fcvm::qemu
