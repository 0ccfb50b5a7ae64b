#include "guest_root.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "console_log.h"
#include "setup_error.h"

namespace fcvm::agent {
namespace {

// Where the initramfs stages the root's pieces before the switch.
constexpr const char* kStage = "/.fcvm";
constexpr const char* kLower = "/.fcvm/lower";
constexpr const char* kUpperFs = "/.fcvm/upper";
constexpr const char* kNewRoot = "/.fcvm/root";

// How long to wait for a block device that the kernel may still be probing.
constexpr std::chrono::milliseconds kDeviceTimeout{5000};

void make_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) throw_errno("mkdir " + path);
}

void mount_or_throw(const std::string& source, const std::string& target, const char* fstype,
                    unsigned long flags, const std::string& data) {
  if (::mount(source.c_str(), target.c_str(), fstype, flags,
              data.empty() ? nullptr : data.c_str()) != 0) {
    throw_errno("mount " + source + " on " + target + (fstype ? std::string(" (") + fstype + ")" : ""));
  }
}

void mount_api(const char* source, const char* target, const char* fstype, unsigned long flags,
               const char* data) {
  make_dir(target, 0755);
  if (::mount(source, target, fstype, flags, data) != 0 && errno != EBUSY) {
    throw_errno(std::string("mount ") + fstype + " on " + target);
  }
}

std::filesystem::path find_drive(const DriveRef& drive, const DeviceFinder& devices) {
  auto dev = DeviceFinder::wait_for([&] { return devices.block_device(drive); }, kDeviceTimeout);
  if (!dev) {
    throw SetupError("drive '" + drive.drive + "': no virtio-blk device has that serial and /dev/vd" +
                     DeviceFinder::disk_letters(drive.index) + " (index " +
                     std::to_string(drive.index) + ") does not exist");
  }
  return *dev;
}

void mount_drive(const DriveRef& drive, const DeviceFinder& devices, const std::string& target,
                 bool read_only) {
  const auto dev = find_drive(drive, devices);
  make_dir(target, 0755);
  unsigned long flags = read_only ? MS_RDONLY : 0;
  if (::mount(dev.c_str(), target.c_str(), drive.fstype.c_str(), flags, nullptr) != 0) {
    throw_errno("mount drive '" + drive.drive + "' (" + dev.string() + ", " + drive.fstype +
                ") on " + target);
  }
}

// Moves the API filesystems into the new root, then the new root over "/".
void switch_root(const std::string& new_root) {
  for (const char* m : {"/dev", "/proc", "/sys", "/run", "/tmp"}) {
    const std::string target = new_root + m;
    struct stat st {};
    if (::stat(target.c_str(), &st) != 0) ::mkdir(target.c_str(), 0755);  // fails on a RO root
    if (::mount(m, target.c_str(), nullptr, MS_MOVE, nullptr) != 0) {
      if (std::string(m) == "/dev" || std::string(m) == "/proc") {
        throw_errno(std::string("move ") + m + " into the new root");
      }
      log_line(std::string("not moving ") + m + " into the new root: " + errno_text(errno));
      ::umount2(m, MNT_DETACH);
    }
  }
  if (::chdir(new_root.c_str()) != 0) throw_errno("chdir " + new_root);
  if (::mount(new_root.c_str(), "/", nullptr, MS_MOVE, nullptr) != 0) {
    throw_errno("move " + new_root + " over /");
  }
  if (::chroot(".") != 0) throw_errno("chroot into the new root");
  if (::chdir("/") != 0) throw_errno("chdir / in the new root");
}

}  // namespace

void GuestRoot::mount_api_filesystems() {
  constexpr unsigned long kCommon = MS_NOSUID | MS_NODEV;
  mount_api("proc", "/proc", "proc", kCommon | MS_NOEXEC, nullptr);
  mount_api("sysfs", "/sys", "sysfs", kCommon | MS_NOEXEC, nullptr);
  mount_api("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  mount_api("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666");
  mount_api("tmpfs", "/dev/shm", "tmpfs", kCommon, "mode=1777");
  mount_api("tmpfs", "/run", "tmpfs", kCommon, "mode=0755");
  mount_api("tmpfs", "/tmp", "tmpfs", kCommon, "mode=1777");
  // devtmpfs lacks the links programs expect (bash process substitution uses /dev/fd).
  ::symlink("/proc/self/fd", "/dev/fd");
  ::symlink("/proc/self/fd/0", "/dev/stdin");
  ::symlink("/proc/self/fd/1", "/dev/stdout");
  ::symlink("/proc/self/fd/2", "/dev/stderr");
}

void GuestRoot::enter(const RootSpec& spec, const DeviceFinder& devices) {
  mode_ = spec.mode;
  switch (spec.mode) {
    case RootMode::kInitramfs:
      return;
    case RootMode::kDirect: {
      make_dir(kStage, 0700);
      mount_drive(spec.drive, devices, kNewRoot, is_read_only_fstype(spec.drive.fstype));
      switch_root(kNewRoot);
      return;
    }
    case RootMode::kOverlay: {
      make_dir(kStage, 0700);
      mount_drive(spec.lower, devices, kLower, /*read_only=*/true);
      mount_drive(spec.upper, devices, kUpperFs, /*read_only=*/false);
      make_dir(std::string(kUpperFs) + "/upper", 0755);
      make_dir(std::string(kUpperFs) + "/work", 0755);
      make_dir(kNewRoot, 0755);
      const std::string options = std::string("lowerdir=") + kLower + ",upperdir=" + kUpperFs +
                                  "/upper,workdir=" + kUpperFs + "/work";
      mount_or_throw("overlay", kNewRoot, "overlay", 0, options);
      upper_mount_.reset(::open(kUpperFs, O_PATH | O_DIRECTORY | O_CLOEXEC));
      switch_root(kNewRoot);
      return;
    }
  }
}

void GuestRoot::make_read_only() {
  if (mode_ == RootMode::kInitramfs) return;
  // A root that is read-only by its filesystem (squashfs) may lack /var/tmp: then it has none.
  ::mkdir("/var", 0755);
  ::mkdir("/var/tmp", 01777);
  struct stat st {};
  if (::stat("/var/tmp", &st) == 0 && S_ISDIR(st.st_mode)) {
    mount_or_throw("tmpfs", "/var/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  } else {
    log_line("read-only root without /var/tmp: none mounted");
  }
  set_writable(false);
  read_only_ = true;
}

void GuestRoot::set_writable(bool writable) {
  // A bind remount changes this mount's flag only, not the filesystem's.
  const unsigned long flags = MS_REMOUNT | MS_BIND | (writable ? 0 : MS_RDONLY);
  if (::mount(nullptr, "/", nullptr, flags, nullptr) != 0) {
    throw_errno(std::string("remount / ") + (writable ? "writable" : "read-only"));
  }
}

void GuestRoot::prepare_power_off() noexcept {
  ::sync();
  if (mode_ == RootMode::kInitramfs) return;  // RAM only, nothing to make clean
  if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY, nullptr) != 0 && errno != EROFS) {
    log_line("remount / read-only: " + errno_text(errno));
  }
  if (upper_mount_) {
    // Reach the hidden mount through its descriptor's magic link.
    const std::string path = "/proc/self/fd/" + std::to_string(upper_mount_.get());
    if (::mount(nullptr, path.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
      log_line("remount the overlay's upper filesystem read-only: " + errno_text(errno));
    }
  }
  ::sync();
}

}  // namespace fcvm::agent
