#include "qemu_backend.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <system_error>

#include "fcvm/file_clone.h"
#include "fcvm/memory.h"
#include "fcvm/probe_cache.h"
#include "fcvm/program_path.h"
#include "fcvm/unique_fd.h"
#include "host_tsc.h"
#include "qemu_command_line.h"
#include "qemu_vm.h"
#include "state_file_header.h"

namespace fcvm::qemu {
namespace {

constexpr const char* kInstallFix = "fix: apt-get install qemu-system-x86";

Status must_exist(const std::filesystem::path& path, const std::string& what) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return error(Errc::not_found, what + " " + path.string() + " not found");
  }
  return ok_status();
}

Status check_inputs(const std::filesystem::path& kernel, const std::filesystem::path& initrd,
                    const std::vector<Drive>& drives) {
  FCVM_RETURN_IF_ERROR(must_exist(kernel, "kernel"));
  if (!initrd.empty()) FCVM_RETURN_IF_ERROR(must_exist(initrd, "initrd"));
  for (const auto& d : drives) FCVM_RETURN_IF_ERROR(must_exist(d.path, "drive '" + d.id + "':"));
  return ok_status();
}

Status make_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return error(Errc::io, "create VM directory " + dir.string() + ": " + ec.message());
  return ok_status();
}

// The VM's own RAM file, a copy of `image`: a reflink where the filesystem can, else the
// data extents (holes stay holes). Not fsynced: it is RAM, not a snapshot.
Status copy_memory_image(const std::filesystem::path& image, const std::filesystem::path& dest) {
  UniqueFd in(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return errno_status("open memory image " + image.string());
  UniqueFd out(::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out) return errno_status("create " + dest.string());
  if (::ioctl(out.get(), FICLONE, in.get()) == 0) return ok_status();
  Status copied = copy_data_extents(in.get(), out.get(), "memory image " + image.string());
  if (!copied.ok()) ::unlink(dest.c_str());
  return copied;
}

}  // namespace

QemuBackend::QemuBackend(QemuConfig config, LoggerPtr log, std::filesystem::path probe_cache)
    : config_(std::move(config)), log_(log ? std::move(log) : null_logger()), probe_cache_(std::move(probe_cache)) {}

QemuHostOptions QemuBackend::host_options(Accel accel) const {
  QemuHostOptions host;
  host.binary = config_.binary;
  host.accel = accel;
  host.tsc_khz = accel == Accel::tcg ? HostTsc::khz() : 0;
  return host;
}

VmmCapabilities QemuBackend::capabilities() const {
  VmmCapabilities caps;
  caps.snapshot = true;
  caps.restore_file_memory = true;
  caps.restore_uffd_memory = true;  // through fcvm-uffd-shim (uffd_shim/)
  caps.agent_transport = AgentTransport::virtio_serial;
  return caps;
}

std::filesystem::path QemuBackend::uffd_shim() const {
  if (!config_.uffd_shim.empty()) return config_.uffd_shim;
  // This plugin is <libdir>/fcvm/plugins/fcvm-vmm-qemu.so; the shim is <libdir>/fcvm/.
  Dl_info info{};
  if (::dladdr(reinterpret_cast<const void*>(&kInstallFix), &info) == 0 || !info.dli_fname) return {};
  return std::filesystem::path(info.dli_fname).parent_path().parent_path() / "fcvm-uffd-shim.so";
}

AccelChoice QemuBackend::accel() const { return AccelChoice::decide(config_, KvmHost::detect()); }

Probe QemuBackend::probe() {
  const std::filesystem::path binary = find_program(config_.binary);
  auto version = probe_cache_.empty() || binary.empty()
                     ? run_command({config_.binary, "-version"})
                     : cached_command_output(probe_cache_, {binary.string(), "-version"}, {binary});
  if (!version) {
    const Status failed = version.status();
    const std::string& why = failed.message();
    if (failed.code() == Errc::unavailable) return Probe::no(why + "; " + kInstallFix);
    return Probe::no(config_.binary + " does not run (" + why + "); " + kInstallFix);
  }
  // "QEMU emulator version 7.2.22 (Debian ...)"
  std::string line = version->substr(0, version->find('\n'));
  const auto at = line.find("version ");
  std::string number = at == std::string::npos ? line : line.substr(at + 8);
  number = number.substr(0, number.find(' '));
  const AccelChoice choice = accel();
  if (!choice.usable) return Probe::no(choice.reason);
  return Probe::yes(config_.binary + " " + number + ", " + choice.reason);
}

Result<std::unique_ptr<Vm>> QemuBackend::launch(const VmSpec& spec) {
  const std::string who = "vmm-qemu: VM " + spec.name + ": ";
  const AccelChoice choice = accel();
  if (!choice.usable) return error(Errc::unavailable, who + choice.reason);
  const QemuHostOptions host = host_options(choice.accel);
  auto argv = QemuCommandLine::for_launch(spec, host);
  if (!argv) return argv.status().with_context(who);
  FCVM_RETURN_IF_ERROR(check_inputs(spec.kernel, spec.initrd, spec.drives).with_context(who));
  FCVM_RETURN_IF_ERROR(make_dir(spec.dir).with_context(who));
  // QEMU maps DIR/mem share=on and writes guest RAM into it: never into an inode that a
  // snapshot or fork also names.
  const auto mem = QemuCommandLine::memory_file(spec.dir);
  if (std::error_code ec; std::filesystem::exists(mem, ec)) {
    FCVM_RETURN_IF_ERROR(make_private_before_write(mem).with_context(who));
  }

  QemuVm::StartOptions start;
  start.argv = std::move(*argv);
  start.name = spec.name;
  start.dir = spec.dir;
  start.namespaces = spec.namespaces;
  start.agent_socket = spec.agent_socket;
  start.machine = StateFileHeader::from_spec(spec, QemuCommandLine::kernel_cmdline(spec.cmdline, host),
                                             to_string(choice.accel));
  start.owns_memory_file = true;
  auto vm = QemuVm::start(std::move(start), log_->child(spec.name));
  if (!vm) return vm.status().with_context(who);
  return std::unique_ptr<Vm>(std::move(*vm));
}

Result<std::unique_ptr<Vm>> QemuBackend::restore(const RestoreSpec& spec) {
  const std::string who = "vmm-qemu: VM " + spec.vm.name + ": restore: ";
  const bool uffd = spec.memory.kind == MemorySourceKind::uffd;
  const auto shim = uffd ? uffd_shim() : std::filesystem::path();
  if (uffd && ::access(shim.c_str(), R_OK) != 0) {
    return error(Errc::unavailable, who + "the UFFD preload library " + shim.string() +
                                        " is missing; reinstall fcvm or set the plugin's uffd_shim");
  }
  const AccelChoice choice = accel();
  if (!choice.usable) return error(Errc::unavailable, who + choice.reason);
  std::uint64_t offset = 0;
  auto header = StateFileHeader::read(spec.snapshot.state, &offset);
  if (!header) return header.status().with_context(who);
  if (!uffd) {
    const auto image = spec.memory.path.empty() ? spec.snapshot.memory : spec.memory.path;
    std::error_code ec;
    const auto image_size = std::filesystem::file_size(image, ec);
    if (ec) return error(Errc::not_found, who + "memory image " + image.string() + ": " + ec.message());
    if (image_size < std::uint64_t{header->memory_mib} << 20) {
      return error(Errc::invalid_argument, who + "memory image " + image.string() + " holds " +
                                               std::to_string(image_size) + " bytes, less than the " +
                                               std::to_string(header->memory_mib) + " MiB the snapshot has");
    }
  }
  auto argv = QemuCommandLine::for_restore(spec, *header, host_options(choice.accel));
  if (!argv) return argv.status().with_context(who);
  FCVM_RETURN_IF_ERROR(check_inputs(header->kernel, header->initrd, spec.vm.drives).with_context(who));
  FCVM_RETURN_IF_ERROR(make_dir(spec.vm.dir).with_context(who));
  const bool own_memory = spec.snapshottable && !uffd;
  if (own_memory) {
    const auto image = spec.memory.path.empty() ? spec.snapshot.memory : spec.memory.path;
    FCVM_RETURN_IF_ERROR(copy_memory_image(image, QemuCommandLine::memory_file(spec.vm.dir)).with_context(who));
  }

  QemuVm::StartOptions start;
  start.argv = std::move(*argv);
  start.name = spec.vm.name;
  start.dir = spec.vm.dir;
  start.namespaces = spec.vm.namespaces;
  start.agent_socket = spec.vm.agent_socket;
  start.machine = *header;
  start.owns_memory_file = own_memory;  // QemuVm removes it with the VM
  start.memory_file_ready = own_memory;
  if (uffd) start.env_add = QemuCommandLine::uffd_environment(shim, spec.memory.path, *header);
  start.on_spawned = spec.announce_vmm;
  auto vm = QemuVm::start(std::move(start), log_->child(spec.vm.name));
  if (!vm) {
    if (own_memory) ::unlink(QemuCommandLine::memory_file(spec.vm.dir).c_str());
    return vm.status().with_context(who);
  }
  FCVM_RETURN_IF_ERROR((*vm)->load_snapshot(spec.snapshot.state, offset, spec.resume).with_context(who));
  return std::unique_ptr<Vm>(std::move(*vm));
}

}  // namespace fcvm::qemu
