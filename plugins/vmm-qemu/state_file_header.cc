#include "state_file_header.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "fcvm/unique_fd.h"

namespace fcvm::qemu {
namespace {

constexpr const char* kMagic = "fcvm-qemu-state";
// A header line longer than this is not ours (the kernel command line is at most a few KiB).
constexpr size_t kMaxHeader = 64 * 1024;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ",") + s;
  return "[" + out + "]";
}

}  // namespace

StateFileHeader StateFileHeader::from_spec(const VmSpec& spec, const std::string& cmdline,
                                           const std::string& accel) {
  StateFileHeader h;
  h.vcpus = spec.vcpus;
  h.memory_mib = spec.memory_mib;
  h.kernel = spec.kernel;
  h.initrd = spec.initrd;
  h.cmdline = cmdline;
  for (const auto& d : spec.drives) h.drive_ids.push_back(d.id);
  for (const auto& n : spec.nics) {
    h.nic_ids.push_back(n.id);
    h.nic_macs.push_back(n.mac);
  }
  h.agent = !spec.agent_socket.empty();
  h.accel = accel;
  return h;
}

std::string StateFileHeader::encode() const {
  nlohmann::json j = {
      {"format", kMagic},       {"version", kFormatVersion},  {"vcpus", vcpus},
      {"memory_mib", memory_mib}, {"kernel", kernel.string()}, {"initrd", initrd.string()},
      {"cmdline", cmdline},     {"drives", drive_ids},        {"nics", nic_ids},
      {"macs", nic_macs},       {"agent", agent},             {"accel", accel},
  };
  return j.dump() + "\n";
}

Result<StateFileHeader> StateFileHeader::read(const std::filesystem::path& state,
                                              std::uint64_t* stream_offset) {
  UniqueFd fd(::open(state.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return error(Errc::not_found, "snapshot state " + state.string() + " not found");
    return errno_status("open " + state.string());
  }
  std::string buf(kMaxHeader, '\0');
  size_t have = 0;
  size_t newline = std::string::npos;
  while (have < buf.size()) {
    ssize_t n = ::read(fd.get(), buf.data() + have, buf.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("read " + state.string());
    if (n == 0) break;
    newline = buf.find('\n', have);
    have += static_cast<size_t>(n);
    if (newline != std::string::npos && newline < have) break;
    newline = std::string::npos;
  }
  const std::string not_ours = state.string() + " is not a vmm-qemu snapshot state file";
  if (newline == std::string::npos) return error(Errc::invalid_argument, not_ours);
  nlohmann::json j = nlohmann::json::parse(buf.substr(0, newline), nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("format", "") != kMagic) {
    return error(Errc::invalid_argument, not_ours);
  }
  if (j.value("version", 0) != kFormatVersion) {
    return error(Errc::invalid_argument, state.string() + ": state format version " +
                                             j["version"].dump() + " is not supported (want " +
                                             std::to_string(kFormatVersion) + ")");
  }
  StateFileHeader h;
  try {
    h.vcpus = j.at("vcpus").get<unsigned>();
    h.memory_mib = j.at("memory_mib").get<unsigned>();
    h.kernel = j.at("kernel").get<std::string>();
    h.initrd = j.at("initrd").get<std::string>();
    h.cmdline = j.at("cmdline").get<std::string>();
    h.drive_ids = j.at("drives").get<std::vector<std::string>>();
    h.nic_ids = j.at("nics").get<std::vector<std::string>>();
    h.nic_macs = j.at("macs").get<std::vector<std::string>>();
    h.agent = j.at("agent").get<bool>();
    h.accel = j.at("accel").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    return error(Errc::invalid_argument, state.string() + ": bad state header: " + e.what());
  }
  if (h.nic_macs.size() != h.nic_ids.size()) {
    return error(Errc::invalid_argument, state.string() + ": bad state header: nics and macs differ in length");
  }
  if (stream_offset != nullptr) *stream_offset = newline + 1;
  return h;
}

Status StateFileHeader::check_layout(const VmSpec& clone) const {
  std::vector<std::string> drives, nics;
  for (const auto& d : clone.drives) drives.push_back(d.id);
  for (const auto& n : clone.nics) nics.push_back(n.id);
  if (drives != drive_ids) {
    return error(Errc::invalid_argument, "the snapshot has drives " + join(drive_ids) +
                                             " but the restore gives " + join(drives) +
                                             "; pass the same drive ids in the same order");
  }
  if (nics != nic_ids) {
    return error(Errc::invalid_argument, "the snapshot has nics " + join(nic_ids) +
                                             " but the restore gives " + join(nics) +
                                             "; pass the same nic ids in the same order");
  }
  if (agent != !clone.agent_socket.empty()) {
    return error(Errc::invalid_argument,
                 agent ? "the snapshot has an agent port: the restore needs an agent_socket"
                       : "the snapshot has no agent port: the restore must not set agent_socket");
  }
  return ok_status();
}

}  // namespace fcvm::qemu
