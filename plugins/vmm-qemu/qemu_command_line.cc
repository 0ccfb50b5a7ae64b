#include "qemu_command_line.h"

#include <cctype>
#include <set>
#include <sstream>

#include <fcvm/agent_protocol.h>

namespace fcvm::qemu {
namespace {

// sockaddr_un::sun_path holds 108 bytes including the terminating NUL.
constexpr size_t kMaxSocketPath = 107;
// virtio-blk reports at most 20 bytes of serial (VIRTIO_BLK_ID_BYTES); QEMU truncates.
constexpr size_t kMaxSerial = 20;

bool valid_id(const std::string& id) {
  if (id.empty() || !std::isalpha(static_cast<unsigned char>(id[0]))) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

bool valid_mac(const std::string& mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2) {
      if (mac[i] != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(mac[i]))) {
      return false;
    }
  }
  return true;
}

Status check_socket_path(const std::filesystem::path& path, const char* what) {
  if (path.string().size() > kMaxSocketPath) {
    return error(Errc::invalid_argument,
                 std::string(what) + " path " + path.string() + " is longer than " +
                     std::to_string(kMaxSocketPath) + " bytes (unix socket limit); use a shorter VM directory");
  }
  return ok_status();
}

Status check_layout(const VmSpec& spec) {
  if (spec.dir.empty()) return error(Errc::invalid_argument, "VM directory is empty");
  std::set<std::string> seen;
  for (const auto& d : spec.drives) {
    if (!valid_id(d.id)) {
      return error(Errc::invalid_argument, "drive id '" + d.id +
                                               "' must start with a letter and hold only letters, "
                                               "digits, '-', '_' and '.'");
    }
    if (d.id.size() > kMaxSerial) {
      return error(Errc::invalid_argument, "drive id '" + d.id + "' is longer than " +
                                               std::to_string(kMaxSerial) +
                                               " bytes, the most a virtio-blk serial holds");
    }
    if (!seen.insert(d.id).second) return error(Errc::invalid_argument, "drive id '" + d.id + "' is used twice");
    if (d.path.empty()) return error(Errc::invalid_argument, "drive '" + d.id + "' has no path");
  }
  seen.clear();
  for (const auto& n : spec.nics) {
    if (!valid_id(n.id)) {
      return error(Errc::invalid_argument, "nic id '" + n.id +
                                               "' must start with a letter and hold only letters, "
                                               "digits, '-', '_' and '.'");
    }
    if (!seen.insert(n.id).second) return error(Errc::invalid_argument, "nic id '" + n.id + "' is used twice");
    if (n.tap.empty()) return error(Errc::invalid_argument, "nic '" + n.id + "' has no tap device");
    if (n.tap.find(',') != std::string::npos || n.tap.size() > 15) {
      return error(Errc::invalid_argument, "nic '" + n.id + "': tap name '" + n.tap + "' is not a valid interface name");
    }
    if (!n.mac.empty() && !valid_mac(n.mac)) {
      return error(Errc::invalid_argument, "nic '" + n.id + "': MAC '" + n.mac +
                                               "' is not of the form 02:fc:00:00:00:02");
    }
  }
  FCVM_RETURN_IF_ERROR(check_socket_path(QemuCommandLine::qmp_socket(spec.dir), "QMP socket"));
  if (!spec.agent_socket.empty()) FCVM_RETURN_IF_ERROR(check_socket_path(spec.agent_socket, "agent socket"));
  return ok_status();
}

// The parts after the memory backend; `machine` gives vcpus, memory, kernel, initrd and
// the final command line, `layout` the devices and paths.
std::vector<std::string> build(const QemuHostOptions& host, const VmSpec& layout,
                               const StateFileHeader& machine, const std::string& memory_backend,
                               bool incoming) {
  using E = QemuCommandLine;
  const Accel accel = host.accel;
  std::vector<std::string> a = {host.binary};
  auto add = [&a](std::initializer_list<std::string> items) { a.insert(a.end(), items); };
  if (!layout.name.empty()) add({"-name", "guest=" + E::escape(layout.name)});
  add({"-machine", "microvm,memory-backend=mem", "-accel", to_string(accel)});
  // QEMU 7.2 under KVM on nested hosts asserts on MSR 0x10a unless arch-capabilities is off.
  if (accel == Accel::kvm) add({"-cpu", "host,-arch-capabilities"});
  add({"-smp", std::to_string(machine.vcpus), "-m", std::to_string(machine.memory_mib) + "M"});
  add({"-object", memory_backend});
  add({"-nodefaults", "-no-user-config", "-nographic", "-no-reboot"});
  add({"-chardev", "socket,id=qmp,path=" + E::escape(E::qmp_socket(layout.dir).string()) +
                       ",server=on,wait=off",
       "-mon", "chardev=qmp,mode=control"});
  if (!layout.console_log.empty()) {
    add({"-chardev", "file,id=console,path=" + E::escape(layout.console_log.string()) + ",append=on",
         "-serial", "chardev:console"});
  }
  add({"-kernel", machine.kernel.string()});
  if (!machine.initrd.empty()) add({"-initrd", machine.initrd.string()});
  add({"-append", machine.cmdline});
  for (const auto& d : layout.drives) {
    add({"-drive", "id=" + d.id + ",file=" + E::escape(d.path.string()) +
                       ",format=raw,if=none,readonly=" + (d.read_only ? "on" : "off") +
                       ",cache=writeback",
         "-device", "virtio-blk-device,drive=" + d.id + ",serial=" + d.id});
  }
  for (size_t i = 0; i < layout.nics.size(); ++i) {
    const auto& n = layout.nics[i];
    std::string mac = n.mac.empty() && i < machine.nic_macs.size() ? machine.nic_macs[i] : n.mac;
    add({"-netdev", "tap,id=" + n.id + ",ifname=" + n.tap + ",script=no,downscript=no"});
    add({"-device", "virtio-net-device,netdev=" + n.id + (mac.empty() ? "" : ",mac=" + mac)});
  }
  if (!layout.agent_socket.empty()) {
    add({"-device", "virtio-serial-device",
         "-chardev", "socket,id=agent,path=" + E::escape(layout.agent_socket.string()) +
                         ",server=on,wait=off",
         "-device", "virtserialport,chardev=agent,name=" + std::string(agent::kPortName)});
  }
  // Entropy at once: without it the guest's CRNG is ready only ~1.1 s into a TCG boot, and
  // the agent's first getrandom() waits for it (FACTS). A clone still shares the snapshot's
  // CRNG state until the agent reseeds it on ATTACH.
  add({"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-device,rng=rng0"});
  if (incoming) add({"-incoming", "defer", "-S"});
  return a;
}

}  // namespace

std::string QemuCommandLine::kernel_cmdline(const std::string& cmdline, const QemuHostOptions& host) {
  bool has_reboot = false, has_tsc = false;
  std::istringstream words(cmdline);
  std::string word;
  while (words >> word) {
    has_reboot |= word.rfind("reboot=", 0) == 0;
    has_tsc |= word.rfind("tsc=", 0) == 0 || word.rfind("tsc_early_khz=", 0) == 0;
  }
  std::string out = cmdline;
  auto append = [&out](const std::string& param) { out += (out.empty() ? "" : " ") + param; };
  if (!has_reboot) append("reboot=t");
  if (!has_tsc && host.accel == Accel::tcg && host.tsc_khz != 0) {
    append("tsc_early_khz=" + std::to_string(host.tsc_khz) + " tsc=reliable");
  }
  return out;
}

std::filesystem::path QemuCommandLine::qmp_socket(const std::filesystem::path& vm_dir) {
  return vm_dir / "qmp.sock";
}
std::filesystem::path QemuCommandLine::memory_file(const std::filesystem::path& vm_dir) {
  return vm_dir / "mem";
}
std::filesystem::path QemuCommandLine::log_file(const std::filesystem::path& vm_dir) {
  return vm_dir / "qemu.log";
}

std::string QemuCommandLine::escape(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

Result<std::vector<std::string>> QemuCommandLine::for_launch(const VmSpec& spec,
                                                             const QemuHostOptions& host) {
  if (spec.vcpus == 0) return error(Errc::invalid_argument, "vcpus must be at least 1");
  if (spec.memory_mib == 0) return error(Errc::invalid_argument, "memory_mib must be at least 1");
  if (spec.kernel.empty()) return error(Errc::invalid_argument, "no kernel given");
  FCVM_RETURN_IF_ERROR(check_layout(spec));
  const auto machine =
      StateFileHeader::from_spec(spec, kernel_cmdline(spec.cmdline, host), to_string(host.accel));
  const std::string backend = "memory-backend-file,id=mem,size=" + std::to_string(spec.memory_mib) +
                              "M,mem-path=" + escape(memory_file(spec.dir).string()) + ",share=on";
  return build(host, spec, machine, backend, /*incoming=*/false);
}

Result<std::vector<std::string>> QemuCommandLine::for_restore(const RestoreSpec& spec,
                                                              const StateFileHeader& snapshot,
                                                              const QemuHostOptions& host) {
  FCVM_RETURN_IF_ERROR(check_layout(spec.vm));
  FCVM_RETURN_IF_ERROR(snapshot.check_layout(spec.vm));
  const std::string size = "size=" + std::to_string(snapshot.memory_mib) + "M";
  if (spec.memory.kind == MemorySourceKind::uffd) {
    if (spec.memory.path.empty()) return error(Errc::invalid_argument, "no page server socket given");
    return build(host, spec.vm, snapshot, "memory-backend-ram,id=mem," + size, /*incoming=*/true);
  }
  const auto& image = spec.memory.path.empty() ? spec.snapshot.memory : spec.memory.path;
  if (image.empty()) return error(Errc::invalid_argument, "no memory image given");
  // snapshottable: the VM's own copy of the image (made by the backend), mapped as a booted
  // VM's RAM is, so that it can be snapshotted the same way.
  const std::string backend =
      spec.snapshottable
          ? "memory-backend-file,id=mem," + size + ",mem-path=" + escape(memory_file(spec.vm.dir).string()) +
                ",share=on"
          : "memory-backend-file,id=mem," + size + ",mem-path=" + escape(image.string()) + ",share=off";
  return build(host, spec.vm, snapshot, backend, /*incoming=*/true);
}

std::vector<std::string> QemuCommandLine::uffd_environment(const std::filesystem::path& shim,
                                                           const std::filesystem::path& page_server,
                                                           const StateFileHeader& snapshot) {
  return {"LD_PRELOAD=" + shim.string(), "FCVM_UFFD_SOCKET=" + page_server.string(),
          "FCVM_UFFD_MEM_SIZE=" + std::to_string(std::uint64_t{snapshot.memory_mib} << 20)};
}

}  // namespace fcvm::qemu
