#include "api_request.h"

#include <algorithm>
#include <sstream>

namespace fcvm::firecracker {
namespace {

using nlohmann::json;

// Firecracker accepts resource ids of letters, digits and '_' only (checked_id in its API
// server); anything else is a 400 at the first PUT.
Status check_id(const std::string& id, const std::string& what) {
  const bool ok = !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  });
  if (ok) return ok_status();
  return error(Errc::invalid_argument, what + " id '" + id +
                                           "' is not valid for Firecracker (1-64 letters, digits "
                                           "or '_'); rename it");
}

ApiRequest put(std::string path, std::string path_template, json body) {
  return {"PUT", std::move(path), std::move(path_template), std::move(body)};
}

bool has_key(const std::vector<std::string>& tokens, const std::string& key) {
  return std::any_of(tokens.begin(), tokens.end(), [&](const std::string& t) {
    return t == key || t.rfind(key + "=", 0) == 0;
  });
}

}  // namespace

std::string FirecrackerRequests::path_for_vmm(const std::filesystem::path& path,
                                              const std::filesystem::path& dir) {
  const auto p = path.lexically_normal();
  const auto d = dir.lexically_normal();
  const auto rel = p.lexically_relative(d);
  if (!rel.empty() && *rel.begin() != ".." && rel.is_relative() && rel != ".") return rel.string();
  return path.string();
}

std::string FirecrackerRequests::boot_args(const std::string& cmdline) {
  std::vector<std::string> tokens;
  std::istringstream in(cmdline);
  for (std::string t; in >> t;) tokens.push_back(t);
  std::string out = cmdline;
  auto add = [&](const std::string& key, const std::string& token) {
    if (has_key(tokens, key)) return;
    out += (out.empty() ? "" : " ") + token;
  };
  add("reboot", "reboot=k");
  // Firecracker cannot power an x86 guest off: fc-agent reboots instead, which ends it.
  add("fcvm.halt", "fcvm.halt=reboot");
  add("i8042.noaux", "i8042.noaux");
  add("i8042.nomux", "i8042.nomux");
  add("i8042.dumbkbd", "i8042.dumbkbd");
  return out;
}

ApiRequest FirecrackerRequests::logger(const std::filesystem::path& dir) {
  return put("/logger", "/logger",
             {{"log_path", VmFiles::log(dir).string()}, {"level", "Info"}, {"show_level", true},
              {"show_log_origin", false}});
}

ApiRequest FirecrackerRequests::metrics(const std::filesystem::path& dir) {
  return put("/metrics", "/metrics", {{"metrics_path", VmFiles::metrics(dir).string()}});
}

ApiRequest FirecrackerRequests::machine_config(const VmSpec& spec, const FirecrackerOptions& options) {
  return put("/machine-config", "/machine-config",
             {{"vcpu_count", spec.vcpus},
              {"mem_size_mib", spec.memory_mib},
              {"smt", false},
              {"track_dirty_pages", options.track_dirty_pages()}});
}

ApiRequest FirecrackerRequests::boot_source(const VmSpec& spec) {
  json body = {{"kernel_image_path", spec.kernel.string()}, {"boot_args", boot_args(spec.cmdline)}};
  if (!spec.initrd.empty()) body["initrd_path"] = spec.initrd.string();
  return put("/boot-source", "/boot-source", std::move(body));
}

ApiRequest FirecrackerRequests::drive(const Drive& drive, const std::filesystem::path& dir) {
  // No drive is the root device: Firecracker would move it first and add root= to the
  // command line, while the guest agent mounts its root itself and finds drives by order.
  return put("/drives/" + drive.id, "/drives/{drive_id}",
             {{"drive_id", drive.id},
              {"path_on_host", path_for_vmm(drive.path, dir)},
              {"is_root_device", false},
              {"is_read_only", drive.read_only}});
}

ApiRequest FirecrackerRequests::network_interface(const Nic& nic) {
  json body = {{"iface_id", nic.id}, {"host_dev_name", nic.tap}};
  if (!nic.mac.empty()) body["guest_mac"] = nic.mac;
  return put("/network-interfaces/" + nic.id, "/network-interfaces/{iface_id}", std::move(body));
}

ApiRequest FirecrackerRequests::mmds_config(const std::vector<Nic>& nics) {
  json ids = json::array();
  for (const auto& nic : nics) ids.push_back(nic.id);
  return put("/mmds/config", "/mmds/config", {{"version", "V2"}, {"network_interfaces", ids}});
}

ApiRequest FirecrackerRequests::mmds_data(const nlohmann::json& data) {
  return put("/mmds", "/mmds", data);
}

ApiRequest FirecrackerRequests::vsock(const std::filesystem::path& uds_path) {
  return put("/vsock", "/vsock", {{"guest_cid", kGuestCid}, {"uds_path", uds_path.string()}});
}

ApiRequest FirecrackerRequests::entropy() { return put("/entropy", "/entropy", nlohmann::json::object()); }

ApiRequest FirecrackerRequests::instance_start() {
  return put("/actions", "/actions", {{"action_type", "InstanceStart"}});
}

ApiRequest FirecrackerRequests::send_ctrl_alt_del() {
  return put("/actions", "/actions", {{"action_type", "SendCtrlAltDel"}});
}

ApiRequest FirecrackerRequests::pause() {
  return {"PATCH", "/vm", "/vm", {{"state", "Paused"}}};
}

ApiRequest FirecrackerRequests::resume() {
  return {"PATCH", "/vm", "/vm", {{"state", "Resumed"}}};
}

ApiRequest FirecrackerRequests::snapshot_create(const std::filesystem::path& state,
                                                const std::filesystem::path& memory,
                                                SnapshotType type) {
  return put("/snapshot/create", "/snapshot/create",
             {{"snapshot_type", to_api(type)},
              {"snapshot_path", state.string()},
              {"mem_file_path", memory.string()}});
}

ApiRequest FirecrackerRequests::snapshot_load(const RestoreSpec& spec, const FirecrackerOptions& options) {
  const bool uffd = spec.memory.kind == MemorySourceKind::uffd;
  const auto& memory = spec.memory.path.empty() && !uffd ? spec.snapshot.memory : spec.memory.path;
  json overrides = json::array();
  for (const auto& nic : spec.vm.nics) {
    overrides.push_back({{"iface_id", nic.id}, {"host_dev_name", nic.tap}});
  }
  json body = {{"snapshot_path", spec.snapshot.state.string()},
               {"mem_backend",
                {{"backend_type", uffd ? "Uffd" : "File"}, {"backend_path", memory.string()}}},
               {"track_dirty_pages", options.track_dirty_pages()},
               {"resume_vm", spec.resume}};
  if (!overrides.empty()) body["network_overrides"] = std::move(overrides);
  body["vsock_override"] = {{"uds_path", spec.vm.agent_socket.string()}};
  return put("/snapshot/load", "/snapshot/load", std::move(body));
}

ApiRequest FirecrackerRequests::describe_instance() { return {"GET", "/", "/", nullptr}; }

ApiRequest FirecrackerRequests::version() { return {"GET", "/version", "/version", nullptr}; }

Result<std::vector<ApiRequest>> FirecrackerRequests::boot(const VmSpec& spec,
                                                          const FirecrackerOptions& options) {
  if (spec.vcpus < 1 || spec.vcpus > 32) {
    return error(Errc::invalid_argument,
                 "Firecracker runs 1 to 32 vCPUs, not " + std::to_string(spec.vcpus));
  }
  if (spec.memory_mib == 0) return error(Errc::invalid_argument, "memory size is 0 MiB");
  if (spec.kernel.empty()) return error(Errc::invalid_argument, "no kernel given");
  if (spec.agent_socket.empty()) {
    return error(Errc::invalid_argument, "no agent socket given (the vsock device's unix socket)");
  }
  for (const auto& d : spec.drives) FCVM_RETURN_IF_ERROR(check_id(d.id, "drive"));
  for (const auto& n : spec.nics) {
    FCVM_RETURN_IF_ERROR(check_id(n.id, "network interface"));
    if (n.tap.empty()) {
      return error(Errc::invalid_argument, "network interface '" + n.id + "' has no tap device");
    }
  }
  if (!spec.mmds.is_null()) {
    if (!spec.mmds.is_object()) {
      return error(Errc::invalid_argument, "MMDS data must be a JSON object, got " +
                                               std::string(spec.mmds.type_name()));
    }
    if (spec.nics.empty()) {
      return error(Errc::invalid_argument,
                   "MMDS is served through a network interface and this VM has none; give it "
                   "a network or leave VmSpec::mmds null");
    }
    if (spec.mmds.dump().size() > kMaxMmdsBytes) {
      return error(Errc::invalid_argument,
                   "MMDS data is " + std::to_string(spec.mmds.dump().size()) +
                       " bytes; Firecracker accepts at most " + std::to_string(kMaxMmdsBytes));
    }
  }

  std::vector<ApiRequest> out;
  out.push_back(logger(spec.dir));
  out.push_back(metrics(spec.dir));
  out.push_back(machine_config(spec, options));
  out.push_back(boot_source(spec));
  for (const auto& d : spec.drives) out.push_back(drive(d, spec.dir));
  for (const auto& n : spec.nics) out.push_back(network_interface(n));
  if (!spec.mmds.is_null()) {
    out.push_back(mmds_config(spec.nics));
    out.push_back(mmds_data(spec.mmds));
  }
  out.push_back(vsock(spec.agent_socket));
  out.push_back(entropy());  // the CRNG is ready before /init, as under vmm-qemu
  out.push_back(instance_start());
  return out;
}

Result<std::vector<ApiRequest>> FirecrackerRequests::restore(const RestoreSpec& spec,
                                                             const FirecrackerOptions& options) {
  for (const auto& n : spec.vm.nics) {
    FCVM_RETURN_IF_ERROR(check_id(n.id, "network interface"));
    if (n.tap.empty()) {
      return error(Errc::invalid_argument, "network interface '" + n.id + "' has no tap device");
    }
  }
  if (spec.snapshot.state.empty()) return error(Errc::invalid_argument, "no snapshot state file given");
  if (spec.vm.agent_socket.empty()) {
    // Without an override Firecracker would bind the snapshot source's vsock socket.
    return error(Errc::invalid_argument, "no agent socket given (the clone's vsock socket)");
  }
  if (spec.memory.kind == MemorySourceKind::uffd && spec.memory.path.empty()) {
    return error(Errc::invalid_argument, "UFFD memory needs the page server's socket path");
  }
  if (spec.memory.kind == MemorySourceKind::file && spec.memory.path.empty() &&
      spec.snapshot.memory.empty()) {
    return error(Errc::invalid_argument, "no memory image given");
  }
  return std::vector<ApiRequest>{logger(spec.vm.dir), metrics(spec.vm.dir),
                                 snapshot_load(spec, options)};
}

}  // namespace fcvm::firecracker
