#include "engine/process_title.h"

#include <cstring>

namespace fcvm {
namespace {

// The argv strings are contiguous in the area the kernel set up at exec.
char* g_begin = nullptr;
std::size_t g_size = 0;

}  // namespace

void remember_process_args(int argc, char** argv) noexcept {
  if (argc <= 0 || argv == nullptr || argv[0] == nullptr) return;
  char* end = argv[0];
  for (int i = 0; i < argc; ++i) {
    if (argv[i] != end) break;  // not contiguous (someone moved them): stop at what is
    end = argv[i] + std::strlen(argv[i]) + 1;
  }
  g_begin = argv[0];
  g_size = static_cast<std::size_t>(end - argv[0]);
}

void set_process_title(std::string_view title) noexcept {
  if (g_begin == nullptr || g_size == 0) return;
  const std::size_t n = title.size() < g_size - 1 ? title.size() : g_size - 1;
  std::memcpy(g_begin, title.data(), n);
  std::memset(g_begin + n, 0, g_size - n);
}

}  // namespace fcvm
