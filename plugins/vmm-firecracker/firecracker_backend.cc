#include "firecracker_backend.h"

#include "api_request.h"
#include "fcvm/child_process.h"
#include "firecracker_options.h"
#include "firecracker_version.h"
#include "firecracker_vm.h"
#include "host_support.h"

namespace fcvm::firecracker {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kConfigureTimeout = std::chrono::seconds(10);
// A load maps (File) or hands over (UFFD) guest memory and restores devices.
constexpr milliseconds kLoadTimeout = std::chrono::minutes(2);

Status must_exist(const std::filesystem::path& path, const std::string& what) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return error(Errc::not_found, what + " " + path.string() + " not found");
  }
  return ok_status();
}

// Unix socket paths are limited to 107 bytes; Firecracker would fail with a bare EINVAL.
Status check_socket_path(const std::filesystem::path& path, const std::string& what) {
  if (path.string().size() > 107) {
    return error(Errc::invalid_argument, what + " path " + path.string() +
                                             " is longer than a unix socket allows (107 bytes); "
                                             "use a shorter --data-dir");
  }
  return ok_status();
}

// A failed boot or load on a host without what Firecracker needs says which is missing.
Status with_host_hint(const Status& failure, bool uffd) {
  const HostSupport host = HostSupport::detect();
  if (!host.kvm) return error(failure.code(), failure.message() + " (" + host.kvm_problem + ")");
  if (uffd && !host.uffd) return error(failure.code(), failure.message() + " (" + host.uffd_problem + ")");
  return failure;
}

}  // namespace

FirecrackerBackend::FirecrackerBackend(FirecrackerConfig config, LoggerPtr log)
    : config_(std::move(config)), log_(log ? std::move(log) : null_logger()) {}

VmmCapabilities FirecrackerBackend::capabilities() const {
  VmmCapabilities caps;
  caps.snapshot = true;
  caps.restore_file_memory = true;
  caps.restore_uffd_memory = true;  // whether this host allows it: probe() and restore()
  caps.dirty_page_tracking = true;
  caps.mmds = true;
  caps.agent_transport = AgentTransport::vsock;
  return caps;
}

Probe FirecrackerBackend::probe() {
  constexpr const char* kInstallFix =
      "install Firecracker (github.com/firecracker-microvm/firecracker/releases) or set the "
      "plugin's \"binary\"";
  auto output = run_command({config_.binary, "--version"});
  if (!output) {
    return Probe::no(config_.binary + " does not run (" + output.status().message() + "); " + kInstallFix);
  }
  auto version = FirecrackerVersion::parse(*output);
  if (!version) {
    return Probe::no(config_.binary + " --version printed '" + output->substr(0, 80) +
                     "', not a Firecracker version; " + kInstallFix);
  }
  if (Status ok = version->check(); !ok.ok()) return Probe::no(ok.message());
  const HostSupport host = HostSupport::detect();
  if (!host.kvm) return Probe::no(host.kvm_problem);
  return Probe::yes("firecracker " + version->to_string() + ", hardware KVM, UFFD restores " +
                    (host.uffd ? "available" : "unavailable: " + host.uffd_problem));
}

Result<std::unique_ptr<Vm>> FirecrackerBackend::launch(const VmSpec& spec) {
  const std::string who = "vmm-firecracker: VM " + spec.name + ": ";
  auto options = FirecrackerOptions::parse(spec.vmm_options);
  if (!options) return options.status().with_context(who);
  auto requests = FirecrackerRequests::boot(spec, *options);
  if (!requests) return requests.status().with_context(who);
  FCVM_RETURN_IF_ERROR(must_exist(spec.kernel, "kernel").with_context(who));
  if (!spec.initrd.empty()) FCVM_RETURN_IF_ERROR(must_exist(spec.initrd, "initrd").with_context(who));
  for (const auto& d : spec.drives) {
    FCVM_RETURN_IF_ERROR(must_exist(d.path, "drive '" + d.id + "':").with_context(who));
  }
  FCVM_RETURN_IF_ERROR(check_socket_path(VmFiles::api_socket(spec.dir), "API socket").with_context(who));
  FCVM_RETURN_IF_ERROR(check_socket_path(spec.agent_socket, "agent socket").with_context(who));

  FirecrackerVm::StartOptions start;
  start.binary = config_.binary;
  start.name = spec.name;
  start.dir = spec.dir;
  start.console_log = spec.console_log;
  start.agent_socket = spec.agent_socket;
  start.namespaces = spec.namespaces;
  start.options = *options;
  auto vm = FirecrackerVm::start(std::move(start), log_->child(spec.name));
  if (!vm) return vm.status().with_context(who);
  // The last request is InstanceStart, where a host without KVM fails.
  const ApiRequest start_request = requests->back();
  requests->pop_back();
  FCVM_RETURN_IF_ERROR((*vm)->configure(*requests, kConfigureTimeout).with_context(who + "boot: "));
  Status started = (*vm)->configure({start_request}, kConfigureTimeout);
  if (!started.ok()) return with_host_hint(started, false).with_context(who + "boot: ");
  return std::unique_ptr<Vm>(std::move(*vm));
}

Result<std::unique_ptr<Vm>> FirecrackerBackend::restore(const RestoreSpec& spec) {
  const std::string who = "vmm-firecracker: VM " + spec.vm.name + ": restore: ";
  auto options = FirecrackerOptions::parse(spec.vm.vmm_options);
  if (!options) return options.status().with_context(who);
  auto requests = FirecrackerRequests::restore(spec, *options);
  if (!requests) return requests.status().with_context(who);
  FCVM_RETURN_IF_ERROR(must_exist(spec.snapshot.state, "snapshot state").with_context(who));
  const bool uffd = spec.memory.kind == MemorySourceKind::uffd;
  const auto image = uffd || spec.memory.path.empty() ? spec.snapshot.memory : spec.memory.path;
  if (uffd) {
    FCVM_RETURN_IF_ERROR(must_exist(spec.memory.path, "page server socket").with_context(who));
  } else {
    FCVM_RETURN_IF_ERROR(must_exist(image, "memory image").with_context(who));
  }
  for (const auto& d : spec.vm.drives) {
    FCVM_RETURN_IF_ERROR(must_exist(d.path, "drive '" + d.id + "':").with_context(who));
  }
  FCVM_RETURN_IF_ERROR(check_socket_path(VmFiles::api_socket(spec.vm.dir), "API socket").with_context(who));
  FCVM_RETURN_IF_ERROR(check_socket_path(spec.vm.agent_socket, "agent socket").with_context(who));

  FirecrackerVm::StartOptions start;
  start.binary = config_.binary;
  start.name = spec.vm.name;
  start.dir = spec.vm.dir;
  start.console_log = spec.vm.console_log;
  start.agent_socket = spec.vm.agent_socket;
  start.namespaces = spec.vm.namespaces;
  start.options = *options;
  start.diff_base = image;
  auto vm = FirecrackerVm::start(std::move(start), log_->child(spec.vm.name));
  if (!vm) return vm.status().with_context(who);
  // The page server admits only announced VMMs; Firecracker connects during the load.
  if (spec.announce_vmm) FCVM_RETURN_IF_ERROR(spec.announce_vmm((*vm)->pid()).with_context(who));
  Status loaded = (*vm)->configure(*requests, kLoadTimeout);
  if (!loaded.ok()) return with_host_hint(loaded, uffd).with_context(who);
  return std::unique_ptr<Vm>(std::move(*vm));
}

}  // namespace fcvm::firecracker
