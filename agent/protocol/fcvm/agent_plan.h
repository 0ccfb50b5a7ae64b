// The PLAN (and EXEC) schema of the fc-agent protocol, version 2: what the guest mounts as
// its root, which process it runs and how it configures the network.
//
//   {"protocol": 2,                       required, must equal kProtocolVersion
//    "hostname": "web1",                  optional, default "fcvm"; 1-64 of [A-Za-z0-9.-]
//    "root": <Root>,                      required
//    "process": <Process>,                required
//    "network": <Network> | null,         optional, default null (only `lo` comes up)
//    "shutdown_on_exit": true,            optional, default true: power off when the main
//                                         process exits
//    "hold": false}                       optional, default false; true: set everything
//                                         up, send READY and start the process on GO
//                                         (agent_protocol.h, "Startup barrier")
//   Root, one of (each also takes "read_only": true, optional, default false: the root mount
//   is made read-only once set up, with a tmpfs on /var/tmp; /tmp, /run, /dev stay writable):
//    {"mode":"overlay", "lower":<Drive>, "upper":<Drive>}
//        lower mounted read-only, upper holds overlayfs' upper/ and work/ directories
//        (created when missing); the upper fstype must be writable (not squashfs/erofs)
//    {"mode":"direct", "drive":"root", "index":0, "fstype":"ext4"}
//        one filesystem is the root; squashfs/erofs/iso9660 are mounted read-only
//    {"mode":"initramfs"}
//        stay in the initramfs (tests, debugging)
//   Drive: {"drive":"root", "index":0, "fstype":"squashfs"}
//        drive: the virtio-blk serial (1-20 of [A-Za-z0-9_.-]); index: the position among
//        virtio-blk devices (0 = vda), used when no device reports that serial (Firecracker
//        has no serials); fstype: the kernel filesystem name
//   Process (also the EXEC payload):
//    {"args": ["/bin/sh","-c","..."],     required, at least one; args[0] is looked up in
//                                         PATH (from env, else a default) like execvp
//     "env": ["PATH=/usr/bin", "K=V"],    optional, default []; each "KEY=VALUE"
//     "cwd": "/",                         optional, default "/"; absolute
//     "uid": 0, "gid": 0,                 optional, default 0
//     "additional_gids": [],              optional, default []
//     "stdin": false,                     optional, default false: stdin is /dev/null;
//                                         true: a pipe fed by STDIN frames until STDIN_EOF
//     "output_window": 0,                 optional, default 0 (none); 1..kMaxCreditBytes:
//                                         output flow control (agent_protocol.h)
//     "tty": {"rows":24,"cols":80},       optional, default absent (pipes); present: the
//                                         process runs on a pseudo-terminal of this size
//                                         ("Terminals" in agent_protocol.h)
//     "init": false}                      optional, default false; true: an init runs as
//                                         PID 1 of a new PID namespace (with its own /proc),
//                                         forwards signals to the process, its child, reaps
//                                         orphans and exits with the process's status
//   Network:
//    {"mac": "02:fc:00:00:00:02",         required; the interface with this MAC becomes eth0
//     "address": "10.0.0.2/24",           required; IPv4 with prefix length
//     "gateway": "10.0.0.1",              optional; IPv4, default route
//     "dns": ["10.0.0.1"],                optional, default []; written to /etc/resolv.conf
//     "mtu": 1500}                        optional; 68-65535, default: leave as is
//
// Every object rejects unknown fields and wrong types, and the error names the field, e.g.
// `plan.process.args[1]: expected a string, got number`.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fcvm/agent_protocol.h"

namespace fcvm::agent {

struct DriveRef {
  std::string drive;        // virtio-blk serial
  std::uint32_t index = 0;  // fallback: position among virtio-blk devices
  std::string fstype;
  bool operator==(const DriveRef&) const = default;
};

enum class RootMode { kOverlay, kDirect, kInitramfs };

struct RootSpec {
  RootMode mode = RootMode::kInitramfs;
  DriveRef lower;  // overlay
  DriveRef upper;  // overlay
  DriveRef drive;  // direct
  bool read_only = false;
  bool operator==(const RootSpec&) const = default;
};

struct Process {
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string cwd = "/";
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::vector<std::uint32_t> additional_gids;
  bool stdin = false;
  std::uint32_t output_window = 0;
  std::optional<WindowSize> tty;
  bool init = false;
  bool operator==(const Process&) const = default;
};

struct Network {
  std::string mac;  // normalised to lower case
  std::string address;
  int prefix_length = 0;
  std::string gateway;  // empty: no default route
  std::vector<std::string> dns;
  std::uint32_t mtu = 0;  // 0: leave unchanged
  bool operator==(const Network&) const = default;
};

struct Plan {
  int protocol = kProtocolVersion;
  std::string hostname = "fcvm";
  RootSpec root;
  Process process;
  std::optional<Network> network;
  bool shutdown_on_exit = true;
  bool hold = false;
  bool operator==(const Plan&) const = default;
};

// Filesystems that can only be mounted read-only.
inline bool is_read_only_fstype(std::string_view fstype) {
  return fstype == "squashfs" || fstype == "erofs" || fstype == "iso9660";
}

namespace detail {

struct SchemaError {
  std::string message;
};

inline const char* json_type_name(const nlohmann::json& j) {
  if (j.is_number_integer()) return "integer";
  if (j.is_number()) return "number";
  return j.type_name();
}

// Walks one JSON object, remembering its path for error messages and which keys were read,
// so finish() can reject the rest. Throws SchemaError; the parse_* functions catch it.
class ObjectReader {
 public:
  ObjectReader(const nlohmann::json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j_.is_object()) fail(path_, std::string("expected an object, got ") + json_type_name(j_));
  }

  const nlohmann::json* find(std::string_view key) {
    seen_.emplace_back(key);
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }
  std::string at(std::string_view key) const { return path_ + "." + std::string(key); }

  const nlohmann::json& require(std::string_view key) {
    const nlohmann::json* v = find(key);
    if (!v) fail(at(key), "missing");
    return *v;
  }

  std::string string(std::string_view key, std::optional<std::string> fallback = {}) {
    const nlohmann::json* v = find(key);
    if (!v) {
      if (!fallback) fail(at(key), "missing");
      return *fallback;
    }
    return as_string(*v, at(key));
  }

  std::int64_t integer(std::string_view key, std::int64_t lo, std::int64_t hi,
                       std::optional<std::int64_t> fallback = {}) {
    const nlohmann::json* v = find(key);
    if (!v) {
      if (!fallback) fail(at(key), "missing");
      return *fallback;
    }
    return as_integer(*v, at(key), lo, hi);
  }

  bool boolean(std::string_view key, bool fallback) {
    const nlohmann::json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(at(key), std::string("expected a boolean, got ") + json_type_name(*v));
    return v->get<bool>();
  }

  const nlohmann::json* array(std::string_view key, bool required) {
    const nlohmann::json* v = find(key);
    if (!v) {
      if (required) fail(at(key), "missing");
      return nullptr;
    }
    if (!v->is_array()) fail(at(key), std::string("expected an array, got ") + json_type_name(*v));
    return v;
  }

  void finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      bool known = false;
      for (const auto& k : seen_) known = known || k == it.key();
      if (!known) fail(at(it.key()), "unknown field");
    }
  }

  [[noreturn]] static void fail(const std::string& path, const std::string& what) {
    throw SchemaError{path + ": " + what};
  }

  static std::string as_string(const nlohmann::json& v, const std::string& path) {
    if (!v.is_string()) fail(path, std::string("expected a string, got ") + json_type_name(v));
    std::string s = v.get<std::string>();
    if (s.find('\0') != std::string::npos) fail(path, "contains a NUL character");
    return s;
  }

  static std::int64_t as_integer(const nlohmann::json& v, const std::string& path,
                                 std::int64_t lo, std::int64_t hi) {
    if (!v.is_number_integer()) fail(path, std::string("expected an integer, got ") + json_type_name(v));
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
      fail(path, "out of range");
    }
    const std::int64_t n = v.get<std::int64_t>();
    if (n < lo || n > hi) {
      fail(path, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    }
    return n;
  }

 private:
  const nlohmann::json& j_;
  std::string path_;
  std::vector<std::string> seen_;
};

inline bool is_ipv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

inline bool all_chars_in(std::string_view s, std::string_view extra) {
  for (char c : s) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && extra.find(c) == std::string_view::npos) return false;
  }
  return true;
}

inline DriveRef read_drive(ObjectReader& r) {
  DriveRef d;
  d.drive = r.string("drive");
  if (d.drive.empty() || d.drive.size() > 20 || !all_chars_in(d.drive, "_.-")) {
    ObjectReader::fail(r.at("drive"), "must be 1-20 characters of [A-Za-z0-9_.-] (a virtio-blk serial)");
  }
  // 702 devices cover vda..vdzz, far more than any VMM attaches.
  d.index = static_cast<std::uint32_t>(r.integer("index", 0, 701));
  d.fstype = r.string("fstype");
  if (d.fstype.empty() || d.fstype.size() > 32 || !all_chars_in(d.fstype, "_.")) {
    ObjectReader::fail(r.at("fstype"), "must be a kernel filesystem name such as ext4 or squashfs");
  }
  return d;
}

inline RootSpec read_root(const nlohmann::json& j, const std::string& path) {
  ObjectReader r(j, path);
  RootSpec root;
  const std::string mode = r.string("mode");
  if (mode == "overlay") {
    root.mode = RootMode::kOverlay;
    ObjectReader lower(r.require("lower"), r.at("lower"));
    root.lower = read_drive(lower);
    lower.finish();
    ObjectReader upper(r.require("upper"), r.at("upper"));
    root.upper = read_drive(upper);
    upper.finish();
    if (is_read_only_fstype(root.upper.fstype)) {
      ObjectReader::fail(upper.at("fstype"), root.upper.fstype + " is read-only; the upper layer needs a writable filesystem such as ext4");
    }
  } else if (mode == "direct") {
    root.mode = RootMode::kDirect;
    root.drive = read_drive(r);
  } else if (mode == "initramfs") {
    root.mode = RootMode::kInitramfs;
  } else {
    ObjectReader::fail(r.at("mode"), "unknown mode '" + mode + "' (expected overlay, direct or initramfs)");
  }
  root.read_only = r.boolean("read_only", false);
  r.finish();
  return root;
}

inline Process read_process(const nlohmann::json& j, const std::string& path) {
  ObjectReader r(j, path);
  Process p;
  const nlohmann::json* args = r.array("args", true);
  if (args->empty()) ObjectReader::fail(r.at("args"), "must name at least the program");
  for (std::size_t i = 0; i < args->size(); ++i) {
    p.args.push_back(ObjectReader::as_string((*args)[i], r.at("args") + "[" + std::to_string(i) + "]"));
  }
  if (p.args[0].empty()) ObjectReader::fail(r.at("args") + "[0]", "program name is empty");
  if (const nlohmann::json* env = r.array("env", false)) {
    for (std::size_t i = 0; i < env->size(); ++i) {
      const std::string where = r.at("env") + "[" + std::to_string(i) + "]";
      std::string e = ObjectReader::as_string((*env)[i], where);
      const auto eq = e.find('=');
      if (eq == std::string::npos || eq == 0) ObjectReader::fail(where, "expected KEY=VALUE");
      p.env.push_back(std::move(e));
    }
  }
  p.cwd = r.string("cwd", std::string("/"));
  if (p.cwd.empty() || p.cwd[0] != '/') ObjectReader::fail(r.at("cwd"), "must be an absolute path");
  p.uid = static_cast<std::uint32_t>(r.integer("uid", 0, UINT32_MAX - 1, 0));
  p.gid = static_cast<std::uint32_t>(r.integer("gid", 0, UINT32_MAX - 1, 0));
  if (const nlohmann::json* gids = r.array("additional_gids", false)) {
    for (std::size_t i = 0; i < gids->size(); ++i) {
      p.additional_gids.push_back(static_cast<std::uint32_t>(ObjectReader::as_integer(
          (*gids)[i], r.at("additional_gids") + "[" + std::to_string(i) + "]", 0, UINT32_MAX - 1)));
    }
  }
  p.stdin = r.boolean("stdin", false);
  p.output_window = static_cast<std::uint32_t>(r.integer("output_window", 0, kMaxCreditBytes, 0));
  if (const nlohmann::json* tty = r.find("tty")) {
    ObjectReader t(*tty, r.at("tty"));
    p.tty = WindowSize{static_cast<std::uint16_t>(t.integer("rows", 0, 65535)),
                       static_cast<std::uint16_t>(t.integer("cols", 0, 65535))};
    t.finish();
  }
  p.init = r.boolean("init", false);
  r.finish();
  return p;
}

inline std::string normalise_mac(const std::string& mac, const std::string& path) {
  std::string out;
  if (mac.size() != 17) ObjectReader::fail(path, "expected a MAC address like 02:fc:00:00:00:02");
  for (std::size_t i = 0; i < mac.size(); ++i) {
    char c = mac[i];
    if (i % 3 == 2) {
      if (c != ':') ObjectReader::fail(path, "expected a MAC address like 02:fc:00:00:00:02");
      out.push_back(c);
      continue;
    }
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      ObjectReader::fail(path, "expected a MAC address like 02:fc:00:00:00:02");
    }
    out.push_back(c);
  }
  return out;
}

inline Network read_network(const nlohmann::json& j, const std::string& path) {
  ObjectReader r(j, path);
  Network n;
  n.mac = normalise_mac(r.string("mac"), r.at("mac"));
  const std::string cidr = r.string("address");
  const auto slash = cidr.find('/');
  const std::string bad = "expected an IPv4 address with prefix length, like 10.0.0.2/24";
  if (slash == std::string::npos) ObjectReader::fail(r.at("address"), bad);
  n.address = cidr.substr(0, slash);
  const std::string prefix = cidr.substr(slash + 1);
  if (!is_ipv4(n.address) || prefix.empty() || prefix.size() > 2 ||
      prefix.find_first_not_of("0123456789") != std::string::npos || std::stoi(prefix) > 32) {
    ObjectReader::fail(r.at("address"), bad);
  }
  n.prefix_length = std::stoi(prefix);
  n.gateway = r.string("gateway", std::string());
  if (!n.gateway.empty() && !is_ipv4(n.gateway)) {
    ObjectReader::fail(r.at("gateway"), "expected an IPv4 address");
  }
  if (const nlohmann::json* dns = r.array("dns", false)) {
    for (std::size_t i = 0; i < dns->size(); ++i) {
      const std::string where = r.at("dns") + "[" + std::to_string(i) + "]";
      std::string s = ObjectReader::as_string((*dns)[i], where);
      in6_addr a6{};
      if (!is_ipv4(s) && inet_pton(AF_INET6, s.c_str(), &a6) != 1) {
        ObjectReader::fail(where, "expected an IP address");
      }
      n.dns.push_back(std::move(s));
    }
  }
  n.mtu = static_cast<std::uint32_t>(r.integer("mtu", 68, 65535, 0));
  r.finish();
  return n;
}

inline nlohmann::json drive_to_json(const DriveRef& d) {
  return {{"drive", d.drive}, {"index", d.index}, {"fstype", d.fstype}};
}

}  // namespace detail

// Parses and validates a PLAN payload. Returns nullopt with *error naming the field.
inline std::optional<Plan> parse_plan(std::string_view payload, std::string* error) {
  nlohmann::json j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    if (error) *error = "plan: not valid JSON";
    return std::nullopt;
  }
  try {
    detail::ObjectReader r(j, "plan");
    Plan p;
    p.protocol = static_cast<int>(r.integer("protocol", 0, INT32_MAX));
    if (p.protocol != kProtocolVersion) {
      detail::ObjectReader::fail(r.at("protocol"), "version " + std::to_string(p.protocol) +
                                                       " is not supported; this agent speaks version " +
                                                       std::to_string(kProtocolVersion));
    }
    p.hostname = r.string("hostname", std::string("fcvm"));
    if (p.hostname.empty() || p.hostname.size() > 64 || !detail::all_chars_in(p.hostname, ".-")) {
      detail::ObjectReader::fail(r.at("hostname"), "must be 1-64 characters of [A-Za-z0-9.-]");
    }
    p.root = detail::read_root(r.require("root"), r.at("root"));
    p.process = detail::read_process(r.require("process"), r.at("process"));
    if (const nlohmann::json* net = r.find("network"); net && !net->is_null()) {
      p.network = detail::read_network(*net, r.at("network"));
    }
    p.shutdown_on_exit = r.boolean("shutdown_on_exit", true);
    p.hold = r.boolean("hold", false);
    r.finish();
    return p;
  } catch (const detail::SchemaError& e) {
    if (error) *error = e.message;
  } catch (const std::exception& e) {  // nlohmann conversions; not expected after type checks
    if (error) *error = std::string("plan: ") + e.what();
  }
  return std::nullopt;
}

// Parses and validates an EXEC payload (a Process object).
inline std::optional<Process> parse_process(std::string_view payload, std::string* error) {
  nlohmann::json j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    if (error) *error = "process: not valid JSON";
    return std::nullopt;
  }
  try {
    return detail::read_process(j, "process");
  } catch (const detail::SchemaError& e) {
    if (error) *error = e.message;
  } catch (const std::exception& e) {
    if (error) *error = std::string("process: ") + e.what();
  }
  return std::nullopt;
}

inline nlohmann::json to_json(const Process& p) {
  nlohmann::json j = {{"args", p.args}, {"env", p.env}, {"cwd", p.cwd}, {"uid", p.uid},
                      {"gid", p.gid}, {"additional_gids", p.additional_gids},
                      {"stdin", p.stdin}, {"output_window", p.output_window}};
  if (p.tty) j["tty"] = p.tty->to_json();
  if (p.init) j["init"] = true;  // only when set: older agents accept every other process
  return j;
}

inline nlohmann::json to_json(const Plan& p) {
  nlohmann::json root;
  switch (p.root.mode) {
    case RootMode::kOverlay:
      root = {{"mode", "overlay"},
              {"lower", detail::drive_to_json(p.root.lower)},
              {"upper", detail::drive_to_json(p.root.upper)}};
      break;
    case RootMode::kDirect:
      root = detail::drive_to_json(p.root.drive);
      root["mode"] = "direct";
      break;
    case RootMode::kInitramfs:
      root = {{"mode", "initramfs"}};
      break;
  }
  // Written only when set: agents that predate it accept every other plan.
  if (p.root.read_only) root["read_only"] = true;
  nlohmann::json net = nullptr;
  if (p.network) {
    const Network& n = *p.network;
    net = {{"mac", n.mac},
           {"address", n.address + "/" + std::to_string(n.prefix_length)},
           {"dns", n.dns}};
    if (!n.gateway.empty()) net["gateway"] = n.gateway;
    if (n.mtu != 0) net["mtu"] = n.mtu;
  }
  nlohmann::json plan = {{"protocol", p.protocol}, {"hostname", p.hostname}, {"root", root},
                         {"process", to_json(p.process)}, {"network", net},
                         {"shutdown_on_exit", p.shutdown_on_exit}};
  // Written only when set: agents that predate it accept every other plan.
  if (p.hold) plan["hold"] = true;
  return plan;
}

}  // namespace fcvm::agent
