#include "fcvm/program_path.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace fcvm {
namespace {

constexpr std::string_view kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::string_view kSbinDirs = "/usr/local/sbin:/usr/sbin:/sbin";

bool is_executable_file(const std::filesystem::path& candidate) {
  struct stat st {};
  return ::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         ::access(candidate.c_str(), X_OK) == 0;
}

}  // namespace

std::filesystem::path find_program(std::string_view name, ProgramSearch search) {
  if (name.empty()) return {};
  if (name.find('/') != std::string_view::npos) {
    std::filesystem::path given(name);
    return is_executable_file(given) ? given : std::filesystem::path();
  }
  const char* env = std::getenv("PATH");
  std::string dirs(env ? std::string_view(env) : kDefaultPath);
  if (search == ProgramSearch::path_and_sbin) dirs += ":" + std::string(kSbinDirs);
  std::string_view rest = dirs;
  for (;;) {
    const auto colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    const auto candidate = std::filesystem::path(dir.empty() ? "." : std::string(dir)) / name;
    if (is_executable_file(candidate)) return candidate;
    if (colon == std::string_view::npos) return {};
    rest.remove_prefix(colon + 1);
  }
}

}  // namespace fcvm
