#include "host_tools.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace fcvm::btrfs {

std::filesystem::path find_tool(const std::string& name) {
  const char* env = std::getenv("PATH");
  const std::string dirs = std::string(env != nullptr ? env : "/usr/bin:/bin") + ":/usr/sbin:/sbin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    if (end > start) {
      std::filesystem::path candidate = std::filesystem::path(dirs.substr(start, end - start)) / name;
      struct stat st {};
      if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
          ::access(candidate.c_str(), X_OK) == 0) {
        return candidate;
      }
    }
    start = end + 1;
  }
  return {};
}

Result<std::filesystem::path> require_tool(const std::string& name, const std::string& package) {
  auto path = find_tool(name);
  if (path.empty()) {
    return error(Errc::unavailable,
                 name + " not found; install it with 'apt-get install " + package + "'");
  }
  return path;
}

}  // namespace fcvm::btrfs
