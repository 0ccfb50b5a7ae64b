#include "session/image_boot.h"

#include "fcvm/ipv4_cidr.h"

namespace fcvm {
namespace {

constexpr const char* kGuestCmdline = "console=ttyS0 quiet panic=-1";

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
  auto lease = network.setup(request);
  if (!lease) return lease;
  // The plan splits the guest address into address and prefix: refuse a bad one here, while
  // the session can still give the lease back.
  if (!lease->tap.empty()) {
    if (auto cidr = parse_ipv4_cidr(lease->guest.address); !cidr) {
      (void)network.teardown(*lease);
      return cidr.status().with_context(lease->plugin + " gave the guest a bad address: ");
    }
  }
  return lease;
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
    // Checked in create_network.
    const auto cidr = parse_ipv4_cidr(network->guest.address);
    n.address = cidr ? cidr->address_text() : network->guest.address;
    n.prefix_length = cidr ? cidr->prefix : 32;
    n.gateway = network->guest.gateway;
    n.dns = network->guest.dns;
    n.mtu = network->guest.mtu;
    plan.network = n;
  }
  plan.root.read_only = spec_.read_only;
  plan.process = spec_.process;
  return plan;
}

ExecDefaults ImageBoot::exec_defaults() const { return {spec_.process, spec_.rootfs.rootfs}; }

}  // namespace fcvm
