#include "firecracker_version.h"

#include <cctype>
#include <charconv>

namespace fcvm::firecracker {
namespace {

std::optional<unsigned> number(std::string_view& text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  text.remove_prefix(static_cast<std::size_t>(end - text.data()));
  return value;
}

}  // namespace

std::optional<FirecrackerVersion> FirecrackerVersion::parse(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  constexpr std::string_view kBanner = "Firecracker ";
  if (text.substr(0, kBanner.size()) == kBanner) text.remove_prefix(kBanner.size());
  if (!text.empty() && text.front() == 'v') text.remove_prefix(1);
  FirecrackerVersion v;
  auto major = number(text);
  if (!major || text.empty() || text.front() != '.') return std::nullopt;
  text.remove_prefix(1);
  auto minor = number(text);
  if (!minor || text.empty() || text.front() != '.') return std::nullopt;
  text.remove_prefix(1);
  auto patch = number(text);
  if (!patch) return std::nullopt;
  // What may follow: a pre-release suffix, or the end of the line.
  if (!text.empty() && text.front() != '-' && text.front() != '+' &&
      !std::isspace(static_cast<unsigned char>(text.front()))) {
    return std::nullopt;
  }
  v.major = *major;
  v.minor = *minor;
  v.patch = *patch;
  return v;
}

Status FirecrackerVersion::check() const {
  if (major == kMajor && minor >= kMinMinor) return ok_status();
  return error(Errc::unavailable,
               "Firecracker " + to_string() + " is not supported: this plugin speaks the API of " +
                   std::to_string(kMajor) + "." + std::to_string(kMinMinor) + " to " +
                   std::to_string(kMajor) + ".x; install a Firecracker release in that range");
}

std::string FirecrackerVersion::to_string() const {
  return "v" + std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

}  // namespace fcvm::firecracker
