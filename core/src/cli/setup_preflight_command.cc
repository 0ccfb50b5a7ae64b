// fcvm setup preflight: what this host can do, and how to fix what it cannot. A report,
// so it exits 0 whatever it finds; it changes nothing on the host.
#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/command.h"
#include "cli/commands.h"
#include "fcvm/program_path.h"
#include "fcvm/unique_fd.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

struct Check {
  std::string name;
  bool ok = false;
  std::string detail;
  std::string fix;  // empty when ok
};

bool path_exists(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}

bool opens_read_write(const char* path) {
  UniqueFd fd(::open(path, O_RDWR | O_CLOEXEC));
  return fd.valid();
}

// First line of a small /proc or /sys file, or nullopt when it cannot be read.
std::optional<std::string> read_line(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

bool kernel_has_filesystem(const std::string& fs) {
  std::ifstream in("/proc/filesystems");
  std::string line;
  while (std::getline(in, line)) {
    const auto tab = line.rfind('\t');
    if ((tab == std::string::npos ? line : line.substr(tab + 1)) == fs) return true;
  }
  return false;
}

bool kernel_module_available(const std::string& dir_under_kernel) {
  utsname u{};
  if (::uname(&u) != 0) return false;
  return path_exists(std::filesystem::path("/lib/modules") / u.release / "kernel" / dir_under_kernel);
}

Check check_kvm(bool& hardware_kvm) {
  const bool intel = path_exists("/sys/module/kvm_intel");
  const bool amd = path_exists("/sys/module/kvm_amd");
  const bool pvm = path_exists("/sys/module/kvm_pvm");
  const bool dev = path_exists("/dev/kvm");
  const bool rw = dev && opens_read_write("/dev/kvm");
  Check c{"kvm", false, "", ""};
  hardware_kvm = (intel || amd) && rw;
  if (hardware_kvm) {
    c.ok = true;
    c.detail = std::string(intel ? "kvm_intel" : "kvm_amd") + " loaded, /dev/kvm read-write";
    return c;
  }
  if (intel || amd) {
    c.detail = std::string(intel ? "kvm_intel" : "kvm_amd") + " loaded, but /dev/kvm " +
               (dev ? "is not read-write for this user" : "does not exist");
    c.fix = "add your user to the group owning /dev/kvm (usually kvm), or run as root; "
            "until then VMs run under QEMU TCG";
  } else if (pvm) {
    c.detail = "only kvm_pvm (pagetable VM) is loaded: an unmodified guest kernel hangs under "
               "it, so VMs run under QEMU TCG (slower; Firecracker cannot run)";
    c.fix = "use a host with VT-x/AMD-V and load kvm_intel or kvm_amd; TCG works meanwhile";
  } else {
    c.detail = "no hardware KVM module loaded; VMs run under QEMU TCG (slower; Firecracker "
               "cannot run)";
    c.fix = "modprobe kvm_intel (or kvm_amd) on a host with VT-x/AMD-V enabled";
  }
  return c;
}

Check check_userfaultfd() {
  Check c{"userfaultfd", false, "", ""};
  if (opens_read_write("/dev/userfaultfd")) {
    c.ok = true;
    c.detail = "/dev/userfaultfd is read-write for this user";
    return c;
  }
  if (read_line("/proc/sys/vm/unprivileged_userfaultfd") == "1") {
    c.ok = true;
    c.detail = "vm.unprivileged_userfaultfd=1";
    return c;
  }
  c.detail = path_exists("/dev/userfaultfd")
                 ? "/dev/userfaultfd is not read-write for this user and "
                   "vm.unprivileged_userfaultfd=0"
                 : "no /dev/userfaultfd (kernel older than 6.1?) and vm.unprivileged_userfaultfd=0";
  c.fix = "grant access to /dev/userfaultfd (chgrp kvm /dev/userfaultfd; chmod 0660), or "
          "sysctl vm.unprivileged_userfaultfd=1; only the memory-uffd plugin needs it";
  return c;
}

Check check_btrfs() {
  Check c{"btrfs", false, "", ""};
  const bool tools = !find_program("mkfs.btrfs", ProgramSearch::path_and_sbin).empty();
  const bool loaded = kernel_has_filesystem("btrfs");
  const bool module = kernel_module_available("fs/btrfs");
  c.ok = tools && (loaded || module);
  c.detail = std::string(tools ? "mkfs.btrfs found" : "no mkfs.btrfs") + "; kernel " +
             (loaded ? "supports btrfs" : module ? "has the btrfs module (not loaded yet)"
                                                 : "lacks btrfs");
  if (!tools) c.fix = "apt-get install btrfs-progs";
  if (!loaded && !module) {
    c.fix += std::string(c.fix.empty() ? "" : "; ") + "use a kernel with btrfs (CONFIG_BTRFS_FS)";
  }
  if (!c.ok) c.fix += "; only the storage-btrfs plugin needs it";
  return c;
}

Check check_user_namespaces() {
  Check c{"user namespaces", false, "", ""};
  const auto max = read_line("/proc/sys/user/max_user_namespaces");
  const auto unpriv = read_line("/proc/sys/kernel/unprivileged_userns_clone");
  const bool root = ::geteuid() == 0;
  if (!max || std::atol(max->c_str()) <= 0) {
    c.detail = "user.max_user_namespaces is " + (max ? *max : std::string("unreadable"));
    c.fix = "sysctl user.max_user_namespaces=15000";
    return c;
  }
  if (!root && unpriv && *unpriv != "1") {
    c.detail = "kernel.unprivileged_userns_clone=0: only root may create user namespaces";
    c.fix = "sysctl kernel.unprivileged_userns_clone=1 (needed for rootless networking)";
    return c;
  }
  c.ok = true;
  c.detail = "max_user_namespaces=" + *max + (unpriv ? ", unprivileged_userns_clone=" + *unpriv : "");
  return c;
}

struct Tool {
  const char* name;
  const char* package;
  const char* used_for;
};

constexpr Tool kTools[] = {
    {"qemu-system-x86_64", "qemu-system-x86", "the vmm-qemu plugin"},
    {"skopeo", "skopeo", "pulling and converting images"},
    {"umoci", "umoci", "unpacking OCI images"},
    {"mksquashfs", "squashfs-tools", "storage-squashfs base images"},
    {"mkfs.ext4", "e2fsprogs", "writable disks"},
    {"mkfs.btrfs", "btrfs-progs", "storage-btrfs"},
    {"slirp4netns", "slirp4netns", "rootless networking (network-slirp)"},
    {"nft", "nftables", "NAT and port forwards (network-bridged)"},
    {"ip", "iproute2", "network namespaces, veth and tap devices"},
    {"cpio", "cpio", "building the guest initramfs"},
    {"gzip", "gzip", "compressing the guest initramfs"},
};

Check check_tool(const Tool& t) {
  Check c{t.name, false, "", ""};
  const auto path = find_program(t.name, ProgramSearch::path_and_sbin);
  c.ok = !path.empty();
  c.detail = c.ok ? path.string() : std::string("not found; used for ") + t.used_for;
  if (!c.ok) c.fix = std::string("apt-get install ") + t.package;
  return c;
}

Check check_kernel_source() {
  Check c{"linux-source-6.1", false, "", ""};
  for (const char* p : {"/usr/src/linux-source-6.1.tar.xz", "/usr/src/linux-source-6.1.tar.bz2",
                        "/usr/src/linux-source-6.1"}) {
    if (path_exists(p)) {
      c.ok = true;
      c.detail = p;
      return c;
    }
  }
  c.detail = "no /usr/src/linux-source-6.1*: needed to build fcvm's own guest kernel";
  c.fix = "apt-get install linux-source-6.1";
  return c;
}

Check check_kernel_build_deps() {
  Check c{"kernel build deps", false, "", ""};
  std::string missing;
  for (const char* tool : {"make", "gcc", "bc", "bison", "flex", "perl"}) {
    if (find_program(tool, ProgramSearch::path_and_sbin).empty()) missing += std::string(missing.empty() ? "" : ", ") + tool;
  }
  for (const char* header : {"libelf.h", "openssl/ssl.h"}) {
    if (!path_exists(std::filesystem::path("/usr/include") / header)) {
      missing += std::string(missing.empty() ? "" : ", ") + header;
    }
  }
  c.ok = missing.empty();
  c.detail = c.ok ? "make, gcc, bc, bison, flex, perl, libelf and openssl headers found"
                  : "missing: " + missing;
  if (!c.ok) c.fix = "apt-get install build-essential bc bison flex libelf-dev libssl-dev";
  return c;
}

int run_preflight(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("Options");
  desc.add_options()("json", "print {\"accel\": ..., \"checks\": [...]} as JSON");
  auto vm = parse_command_line(ctx, "setup preflight [--json]", desc, {}, args);

  bool hardware_kvm = false;
  std::vector<Check> checks;
  checks.push_back(check_kvm(hardware_kvm));
  checks.push_back(check_userfaultfd());
  checks.push_back(check_btrfs());
  checks.push_back(check_user_namespaces());
  for (const auto& tool : kTools) checks.push_back(check_tool(tool));
  checks.push_back(check_kernel_source());
  checks.push_back(check_kernel_build_deps());
  const char* accel = hardware_kvm ? "kvm" : "tcg";

  if (vm.count("json")) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& c : checks) {
      rows.push_back({{"name", c.name},
                      {"status", c.ok ? "ok" : "missing"},
                      {"detail", c.detail},
                      {"fix", c.fix}});
    }
    std::cout << nlohmann::json{{"accel", accel}, {"checks", rows}}.dump(2) << "\n";
    return 0;
  }

  size_t width = 5;
  for (const auto& c : checks) width = std::max(width, c.name.size());
  const auto pad = [](const std::string& s, size_t w) {
    return s + std::string(w - s.size() + 2, ' ');
  };
  std::cout << pad("CHECK", width) << pad("STATUS", 7) << "DETAIL\n";
  for (const auto& c : checks) {
    std::cout << pad(c.name, width) << pad(c.ok ? "ok" : "missing", 7) << c.detail << "\n";
    if (!c.fix.empty()) std::cout << std::string(width + 11, ' ') << "fix: " << c.fix << "\n";
  }
  std::cout << "\nVMs will run with " << (hardware_kvm ? "KVM" : "QEMU TCG (software emulation)")
            << ".\n";
  return 0;
}

}  // namespace

Command setup_preflight_command() {
  return {{"setup", "preflight"}, "check what this host can do and how to fix what it cannot",
          run_preflight};
}

}  // namespace fcvm::cli
