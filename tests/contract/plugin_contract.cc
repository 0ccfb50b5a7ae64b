#include "plugin_contract.h"

#include <signal.h>

#include <fstream>
#include <sstream>

namespace fcvm::contract {

std::vector<std::string> plugins_of(PluginKind kind) {
  PluginRegistry registry({FCVM_PLUGIN_DIR}, nullptr);
  std::vector<std::string> names;
  for (const auto& info : registry.plugins()) {
    if (info.kind == kind) names.push_back(info.name);
  }
  return names;
}

std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string out = info.param;
  for (char& c : out) {
    if (c == '-') c = '_';
  }
  return out;
}

std::vector<pid_t> child_pids() {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(task.path() / "children");
    pid_t pid = 0;
    while (in >> pid) {
      if (process_alive(pid)) out.push_back(pid);
    }
  }
  return out;
}

bool process_alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  // "pid (comm) S ...": the state follows the last ')'.
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

}  // namespace fcvm::contract
