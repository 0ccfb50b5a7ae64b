// The pure parts of a kernel build: the config fragment's requirements and how a built
// .config is checked against them, the cache key, and the compile-progress estimate.
// No I/O; thread-safe; never throws.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace fcvm::kernel_build {

// First 16 hex digits of sha256(source_version + "\n" + fragment).
std::string cache_key(std::string_view source_version, std::string_view fragment);

// One requirement of a fragment: `CONFIG_<name>=<value>`, or not set when value is empty.
struct ConfigRequirement {
  std::string name;   // without the CONFIG_ prefix
  std::string value;  // "y", "64", "\"text\""; empty: must not be set
};

// The requirements a fragment states (comment lines other than "# CONFIG_X is not set" are
// ignored). A later line for the same option replaces an earlier one.
std::vector<ConfigRequirement> parse_fragment(std::string_view fragment);

// The fragment's requirements that `dot_config` (a .config file's text) does not meet, as
// human-readable items: "CONFIG_SQUASHFS=y (is not set)", "CONFIG_MODULES unset (is y)".
std::vector<std::string> unmet_requirements(std::string_view fragment, std::string_view dot_config);

// True for a kbuild output line that marks one compile step ("  CC      fs/open.o",
// "  AS      arch/x86/...") — what the progress estimate counts.
bool is_compile_step(std::string_view line);

// Compile steps of a full build of the shipped fragment (measured with 6.1.192: 1361 CC +
// 35 AS lines). Progress is steps / this, capped at 99% until make exits.
inline constexpr unsigned kExpectedCompileSteps = 1396;

// Progress percentage for `steps` compile steps: 0..99.
unsigned progress_percent(unsigned steps, unsigned expected = kExpectedCompileSteps);

}  // namespace fcvm::kernel_build
