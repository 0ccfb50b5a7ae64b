// The last lines of a guest's serial console, for errors about a guest that did not come up.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

namespace fcvm {

// The last `lines` lines of `console`, each on a new line after "  | " (empty when the file
// is empty or unreadable). Guest text: the CLI escapes control characters when it prints it.
std::string console_tail(const std::filesystem::path& console, std::size_t lines);

}  // namespace fcvm
