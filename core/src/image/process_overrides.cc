#include "image/process_overrides.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fcvm/atomic_file.h"

namespace fcvm {
namespace {

constexpr const char* kDefaultPath =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string key_of(const std::string& entry) { return entry.substr(0, entry.find('=')); }

void set_env(std::vector<std::string>& env, std::string entry) {
  const auto key = key_of(entry);
  for (auto& e : env) {
    if (key_of(e) == key) {
      e = std::move(entry);
      return;
    }
  }
  env.push_back(std::move(entry));
}

bool is_number(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

// The largest valid UID/GID: (uid_t)-1 means "no change" to the kernel.
constexpr std::uint64_t kMaxId = 4294967294u;

// A numeric UID or GID, or nullopt when `s` is not a number in [0, kMaxId].
std::optional<std::uint32_t> parse_id(const std::string& s) {
  if (!is_number(s) || s.size() > 10) return std::nullopt;
  const std::uint64_t v = std::stoull(s);
  if (v > kMaxId) return std::nullopt;
  return static_cast<std::uint32_t>(v);
}

// A line of /etc/passwd or /etc/group split on ':'.
std::vector<std::string> fields(const std::string& line) {
  std::vector<std::string> out;
  for (size_t start = 0;;) {
    const auto colon = line.find(':', start);
    out.push_back(line.substr(start, colon - start));  // keeps empty fields, trailing too
    if (colon == std::string::npos) return out;
    start = colon + 1;
  }
}

// Finds `name` (or numeric id) in a passwd/group file of the image.
std::optional<std::vector<std::string>> lookup(const std::filesystem::path& file,
                                               const std::string& name, bool by_id) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    auto f = fields(line);
    if (f.size() >= 4 && (by_id ? f[2] == name : f[0] == name)) return f;
  }
  return std::nullopt;
}

// The groups of /etc/group that list `user` as a member.
std::vector<std::uint32_t> member_gids(const std::filesystem::path& file, const std::string& user) {
  std::vector<std::uint32_t> gids;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    const auto f = fields(line);
    if (f.size() < 4 || !parse_id(f[2])) continue;
    std::istringstream members(f[3]);
    for (std::string m; std::getline(members, m, ',');) {
      if (m == user) gids.push_back(*parse_id(f[2]));
    }
  }
  return gids;
}

// The supplementary groups as runc (podman's runtime) sets them for a -u or image USER: the
// primary group, and, unless the spec named a group, every group listing the user (found by
// name or UID). Without a user, runc sets none.
void set_additional_gids(agent::Process& p, const std::filesystem::path& rootfs, bool group_given) {
  p.additional_gids = {p.gid};
  if (group_given) return;
  const auto pw = lookup(rootfs / "etc/passwd", std::to_string(p.uid), true);
  if (!pw || (*pw)[0].empty()) return;
  for (std::uint32_t gid : member_gids(rootfs / "etc/group", (*pw)[0])) {
    if (std::find(p.additional_gids.begin(), p.additional_gids.end(), gid) == p.additional_gids.end()) {
      p.additional_gids.push_back(gid);
    }
  }
}

Status apply_user(agent::Process& p, const std::string& spec, const std::filesystem::path& rootfs,
                  std::string& home) {
  const auto colon = spec.find(':');
  const std::string user = spec.substr(0, colon);
  const std::optional<std::string> group =
      colon == std::string::npos ? std::nullopt : std::optional(spec.substr(colon + 1));
  if (user.empty()) return error(Errc::invalid_argument, "--user '" + spec + "': empty user");

  auto out_of_range = [&](const std::string& what, const std::string& value) {
    return error(Errc::invalid_argument, "--user '" + spec + "': " + what + " " + value +
                                             " is out of range; use a number from 0 to " +
                                             std::to_string(kMaxId));
  };
  const auto pw = lookup(rootfs / "etc/passwd", user, is_number(user));
  if (is_number(user)) {
    const auto uid = parse_id(user);
    if (!uid) return out_of_range("UID", user);
    p.uid = *uid;
    p.gid = pw && parse_id(pw->at(3)) ? *parse_id(pw->at(3)) : p.uid;
  } else if (pw && parse_id(pw->at(2)) && parse_id(pw->at(3))) {
    p.uid = *parse_id(pw->at(2));
    p.gid = *parse_id(pw->at(3));
  } else {
    return error(Errc::invalid_argument, "--user '" + spec + "': no user '" + user +
                                             "' in the image's /etc/passwd; use a numeric UID");
  }
  if (pw && pw->size() >= 6) home = pw->at(5);
  if (group) {
    if (is_number(*group)) {
      const auto gid = parse_id(*group);
      if (!gid) return out_of_range("GID", *group);
      p.gid = *gid;
    } else if (auto gr = lookup(rootfs / "etc/group", *group, false); gr && parse_id(gr->at(2))) {
      p.gid = *parse_id(gr->at(2));
    } else {
      return error(Errc::invalid_argument, "--user '" + spec + "': no group '" + *group +
                                               "' in the image's /etc/group; use a numeric GID");
    }
  }
  return ok_status();
}

Result<std::vector<std::string>> read_env_file(const std::filesystem::path& file,
                                               const char* (*host_env)(const char*)) {
  auto text = read_file(file);
  if (!text) return error(Errc::invalid_argument, "--env-file " + file.string() + ": " + text.status().message());
  std::vector<std::string> out;
  std::stringstream ss(*text);
  std::string line;
  for (int n = 1; std::getline(ss, line); ++n) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    line = line.substr(start);
    if (line.find('=') == 0) {
      return error(Errc::invalid_argument, "--env-file " + file.string() + ":" + std::to_string(n) +
                                               ": no variable name before '='");
    }
    if (line.find('=') == std::string::npos) {
      const char* v = host_env(line.c_str());
      if (!v) continue;
      line += std::string("=") + v;
    }
    out.push_back(line);
  }
  return out;
}

}  // namespace

Result<agent::Process> resolve_process(const ImageConfig& image, const ProcessOverrides& o,
                                       const std::filesystem::path& rootfs,
                                       const char* (*host_env)(const char*)) {
  agent::Process p;

  std::vector<std::string> entrypoint = image.entrypoint;
  std::vector<std::string> cmd = image.cmd;
  if (o.entrypoint) {
    // Like podman: a JSON array is taken as words, anything else as one word; a new
    // entrypoint drops the image's cmd.
    auto parsed = nlohmann::json::parse(*o.entrypoint, nullptr, false);
    if (parsed.is_array() && std::all_of(parsed.begin(), parsed.end(), [](auto& w) { return w.is_string(); })) {
      entrypoint = parsed.get<std::vector<std::string>>();
    } else {
      entrypoint = o.entrypoint->empty() ? std::vector<std::string>{} : std::vector{*o.entrypoint};
    }
    cmd.clear();
  }
  if (!o.args.empty()) cmd = o.args;
  p.args = entrypoint;
  p.args.insert(p.args.end(), cmd.begin(), cmd.end());
  if (p.args.empty()) {
    return error(Errc::invalid_argument,
                 "the image has no command and none was given; pass one after the image name");
  }

  std::string home;
  if (o.user && o.user->empty()) return error(Errc::invalid_argument, "--user: empty; give UID[:GID] or NAME[:GROUP]");
  const std::string user = o.user.value_or(image.user);
  if (!user.empty()) {
    FCVM_RETURN_IF_ERROR(apply_user(p, user, rootfs, home));
    set_additional_gids(p, rootfs, user.find(':') != std::string::npos);
  }
  if (home.empty()) home = p.uid == 0 ? "/root" : "/";

  // podman's defaults (containers.conf): PATH, and TERM=xterm with or without -t.
  p.env = {kDefaultPath, "TERM=xterm"};
  for (const auto& e : image.env) set_env(p.env, e);
  for (const auto& file : o.env_files) {
    auto lines = read_env_file(file, host_env);
    if (!lines) return lines.status();
    for (auto& e : *lines) set_env(p.env, std::move(e));
  }
  for (const auto& e : o.env) {
    if (e.empty() || e.front() == '=') {
      return error(Errc::invalid_argument, "-e '" + e + "': expected KEY=VALUE or KEY");
    }
    if (e.find('=') != std::string::npos) {
      set_env(p.env, e);
    } else if (const char* v = host_env(e.c_str())) {
      set_env(p.env, e + "=" + v);
    }
  }
  if (std::none_of(p.env.begin(), p.env.end(), [](auto& e) { return key_of(e) == "HOME"; })) {
    p.env.push_back("HOME=" + home);
  }

  p.cwd = o.workdir.value_or(image.working_dir.empty() ? "/" : image.working_dir);
  if (p.cwd.empty() || p.cwd.front() != '/') {
    return error(Errc::invalid_argument, "-w '" + p.cwd + "': the working directory must be absolute");
  }
  return p;
}

}  // namespace fcvm
