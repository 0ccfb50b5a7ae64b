#include "engine/container_request.h"

#include <string.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace fcvm {
namespace {

template <class T>
std::optional<T> parse_number(std::string_view s) {
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

}  // namespace

Status check_hostname(const std::string& hostname) {
  const bool allowed = !hostname.empty() && hostname.size() <= 64 &&
                       hostname.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") ==
                           std::string::npos;
  if (allowed) return ok_status();
  return error(Errc::invalid_argument, "--hostname '" + hostname + "': use 1-64 characters of A-Z, a-z, 0-9, '.' and '-'");
}

Result<int> parse_stop_signal(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return error(Errc::invalid_argument, "--stop-signal '" + text + "': " + why);
  };
  std::string name = text;
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
  if (name.rfind("SIG", 0) == 0) name.erase(0, 3);
  if (auto n = parse_number<int>(name)) {
    if (*n < 1 || *n > 64) return bad("signals are numbered 1 to 64");
    return *n;
  }
  // Real-time signals, counted from glibc's SIGRTMIN (34) as podman counts them.
  auto offset = [&](std::size_t prefix) -> std::optional<int> {
    if (name.size() == prefix) return 0;
    if (name[prefix] != '+' && name[prefix] != '-') return std::nullopt;
    auto n = parse_number<int>(std::string_view(name).substr(prefix + 1));
    if (!n) return std::nullopt;
    return name[prefix] == '+' ? *n : -*n;
  };
  std::optional<int> sig;
  if (name.rfind("RTMIN", 0) == 0) {
    if (auto o = offset(5)) sig = SIGRTMIN + *o;
  } else if (name.rfind("RTMAX", 0) == 0) {
    if (auto o = offset(5)) sig = SIGRTMAX + *o;
  } else {
    for (int s = 1; s < SIGRTMIN && !sig; ++s) {
      const char* abbrev = ::sigabbrev_np(s);
      if (abbrev && name == abbrev) sig = s;
    }
  }
  if (!sig) return bad("not a signal; use a name such as TERM, INT or USR1, or a number");
  if (*sig < SIGRTMIN && (name.rfind("RT", 0) == 0)) return bad("below RTMIN");
  if (*sig < 1 || *sig > 64) return bad("signals are numbered 1 to 64");
  return *sig;
}

Result<unsigned> parse_memory_mib(const std::string& text) {
  std::string_view s = text;
  unsigned factor = 1;
  if (!s.empty() && (s.back() == 'g' || s.back() == 'G')) {
    factor = 1024;
    s.remove_suffix(1);
  } else if (!s.empty() && (s.back() == 'm' || s.back() == 'M')) {
    s.remove_suffix(1);
  }
  const auto range = " MiB to " + std::to_string(kMaxGuestMemoryMib) + " MiB";
  auto n = parse_number<unsigned>(s);
  if (!n) {
    return error(Errc::invalid_argument, "--memory '" + text +
                                             "': expected a size in MiB such as 512, 512m or 2g, "
                                             "from " + std::to_string(kMinGuestMemoryMib) + range);
  }
  if (*n < kMinGuestMemoryMib / factor + (kMinGuestMemoryMib % factor != 0) ||
      *n > kMaxGuestMemoryMib / factor) {
    return error(Errc::invalid_argument,
                 "--memory '" + text + "': out of range; the guest needs " +
                     std::to_string(kMinGuestMemoryMib) + range + " (e.g. 256m, 2g)");
  }
  return *n * factor;
}

Result<PortMapping> parse_port_mapping(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return error(Errc::invalid_argument,
                 "-p '" + text + "': " + why + "; expected [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]");
  };
  PortMapping m;
  std::string spec = text;
  if (auto slash = spec.rfind('/'); slash != std::string::npos) {
    m.proto = spec.substr(slash + 1);
    spec.resize(slash);
    if (m.proto != "tcp" && m.proto != "udp") return bad("unknown protocol '" + m.proto + "'");
  }
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    auto colon = spec.find(':', start);
    parts.push_back(spec.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (parts.size() > 3) return bad("too many ':'");
  if (parts.size() == 3) m.host_ip = parts[0];
  auto port = [](const std::string& p) { return parse_number<std::uint16_t>(p); };
  auto guest = port(parts.back());
  auto host = port(parts.size() >= 2 ? parts[parts.size() - 2] : parts.back());
  if (!guest || !host || *guest == 0 || *host == 0) return bad("ports must be 1-65535");
  m.host_port = *host;
  m.guest_port = *guest;
  return m;
}

}  // namespace fcvm
