#include "supervise/console_tail.h"

#include <deque>
#include <fstream>

namespace fcvm {

std::string console_tail(const std::filesystem::path& console, std::size_t lines) {
  std::ifstream in(console);
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(line);
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  for (const auto& l : tail) out += "\n  | " + l;
  return out;
}

}  // namespace fcvm
