#include "setup/kernel_fragment.h"

#include <cctype>
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>

#include "setup/sha256.h"

namespace fcvm::kernel_build {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Calls `fn` for each line of `text` (without the newline).
template <class Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  while (!text.empty()) {
    const auto nl = text.find('\n');
    fn(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// "CONFIG_X=v" -> {X, v}; "# CONFIG_X is not set" -> {X, ""}; anything else -> nullopt.
std::optional<ConfigRequirement> parse_config_line(std::string_view line) {
  line = trim(line);
  constexpr std::string_view kPrefix = "CONFIG_";
  if (line.starts_with(kPrefix)) {
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == kPrefix.size()) return std::nullopt;
    return ConfigRequirement{std::string(line.substr(kPrefix.size(), eq - kPrefix.size())),
                             std::string(trim(line.substr(eq + 1)))};
  }
  constexpr std::string_view kUnsetHead = "# CONFIG_";
  constexpr std::string_view kUnsetTail = " is not set";
  if (line.starts_with(kUnsetHead) && line.ends_with(kUnsetTail) &&
      line.size() > kUnsetHead.size() + kUnsetTail.size()) {
    return ConfigRequirement{
        std::string(line.substr(kUnsetHead.size(),
                                line.size() - kUnsetHead.size() - kUnsetTail.size())),
        ""};
  }
  return std::nullopt;
}

}  // namespace

std::string cache_key(std::string_view source_version, std::string_view fragment) {
  std::string input;
  input.reserve(source_version.size() + 1 + fragment.size());
  input.append(source_version).append("\n").append(fragment);
  return sha256_hex(input).substr(0, 16);
}

std::vector<ConfigRequirement> parse_fragment(std::string_view fragment) {
  std::vector<ConfigRequirement> reqs;
  std::map<std::string, std::size_t> index;
  for_each_line(fragment, [&](std::string_view line) {
    auto req = parse_config_line(line);
    if (!req) return;
    auto [it, inserted] = index.try_emplace(req->name, reqs.size());
    if (inserted) {
      reqs.push_back(std::move(*req));
    } else {
      reqs[it->second] = std::move(*req);
    }
  });
  return reqs;
}

std::vector<std::string> unmet_requirements(std::string_view fragment,
                                            std::string_view dot_config) {
  std::map<std::string, std::string> set;  // only options with a value; "not set" is absence
  for_each_line(dot_config, [&](std::string_view line) {
    auto entry = parse_config_line(line);
    if (!entry) return;
    if (entry->value.empty()) {
      set.erase(entry->name);
    } else {
      set[entry->name] = entry->value;
    }
  });
  std::vector<std::string> unmet;
  for (const auto& req : parse_fragment(fragment)) {
    const auto it = set.find(req.name);
    if (req.value.empty()) {
      if (it != set.end()) unmet.push_back("CONFIG_" + req.name + " unset (is " + it->second + ")");
    } else if (it == set.end()) {
      unmet.push_back("CONFIG_" + req.name + "=" + req.value + " (is not set)");
    } else if (it->second != req.value) {
      unmet.push_back("CONFIG_" + req.name + "=" + req.value + " (is " + it->second + ")");
    }
  }
  return unmet;
}

bool is_compile_step(std::string_view line) {
  // kbuild's quiet output: two spaces, the tool tag, padding, the target.
  return line.starts_with("  CC ") || line.starts_with("  AS ");
}

unsigned progress_percent(unsigned steps, unsigned expected) {
  if (expected == 0) return 99;
  return static_cast<unsigned>(std::min<std::uint64_t>(99, std::uint64_t{steps} * 100 / expected));
}

}  // namespace fcvm::kernel_build
