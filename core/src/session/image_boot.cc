#include "session/image_boot.h"

namespace fcvm {
namespace {

constexpr const char* kGuestCmdline = "console=ttyS0 quiet panic=-1";

// "10.0.2.15/24" → address and prefix length.
std::pair<std::string, int> split_cidr(const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos) return {cidr, 32};
  return {cidr.substr(0, slash), std::stoi(cidr.substr(slash + 1))};
}

}  // namespace

Status ImageBoot::check(const VmmCapabilities&, const std::string&) const { return ok_status(); }

void ImageBoot::describe(VmRecord& record) const {
  record.type = spec_.snapshot_disks ? VmType::clone : VmType::vm;
  record.image = spec_.image_ref;
  record.snapshot = spec_.snapshot_name;
}

GuestMachine ImageBoot::machine() const {
  return {spec_.vcpus, spec_.memory_mib, spec_.assets.kernel, spec_.assets.initrd, spec_.rootfs.digest};
}

Result<DiskLease> ImageBoot::create_disks(StorageBackend& storage, const std::filesystem::path& vm_dir) {
  if (spec_.snapshot_disks) return storage.clone_disks(*spec_.snapshot_disks, vm_dir);
  auto base = storage.prepare_base(spec_.rootfs);
  if (!base) return base.status();
  return storage.create_disks(*base, vm_dir, DiskOptions{});
}

Result<NetworkLease> ImageBoot::create_network(NetworkBackend& network, const NetworkRequest& request) {
  return network.setup(request);
}

Result<std::unique_ptr<Vm>> ImageBoot::start(VmmBackend& vmm, const VmSpec& layout) {
  VmSpec spec = layout;
  spec.vcpus = spec_.vcpus;
  spec.memory_mib = spec_.memory_mib;
  spec.kernel = spec_.assets.kernel;
  spec.initrd = spec_.assets.initrd;
  spec.cmdline = kGuestCmdline;
  return vmm.launch(spec);
}

std::optional<agent::Plan> ImageBoot::plan(const std::string& hostname, const DiskLease& disks,
                                           const std::optional<NetworkLease>& network) const {
  agent::Plan plan;
  plan.hostname = hostname;
  auto drive_ref = [&](const std::string& id, const std::string& fstype) {
    agent::DriveRef ref;
    ref.drive = id;
    ref.fstype = fstype;
    for (size_t i = 0; i < disks.drives.size(); ++i) {
      if (disks.drives[i].id == id) ref.index = static_cast<std::uint32_t>(i);
    }
    return ref;
  };
  if (disks.root.mode == RootPlan::Mode::overlay) {
    plan.root.mode = agent::RootMode::kOverlay;
    plan.root.lower = drive_ref(disks.root.lower_drive, disks.root.lower_fstype);
    plan.root.upper = drive_ref(disks.root.upper_drive, disks.root.upper_fstype);
  } else {
    plan.root.mode = agent::RootMode::kDirect;
    plan.root.drive = drive_ref(disks.root.lower_drive, disks.root.lower_fstype);
  }
  if (network && !network->tap.empty()) {
    agent::Network n;
    n.mac = network->guest.mac;
    std::tie(n.address, n.prefix_length) = split_cidr(network->guest.address);
    n.gateway = network->guest.gateway;
    n.dns = network->guest.dns;
    n.mtu = network->guest.mtu;
    plan.network = n;
  }
  plan.process = spec_.process;
  return plan;
}

ExecDefaults ImageBoot::exec_defaults() const { return {spec_.process, spec_.rootfs.rootfs}; }

}  // namespace fcvm
