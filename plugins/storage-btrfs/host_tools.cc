#include "host_tools.h"

#include "fcvm/program_path.h"

namespace fcvm::btrfs {

std::filesystem::path find_tool(const std::string& name) {
  return find_program(name, ProgramSearch::path_and_sbin);
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
