#include "btrfs_volume.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <system_error>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm/loop_device.h"
#include "fcvm/mount.h"
#include "fcvm/unique_fd.h"
#include "dir_lock.h"
#include "host_tools.h"

namespace fcvm::btrfs {
namespace {

namespace fs = std::filesystem;

const std::string kPrefix = "storage-btrfs: ";

// The data dir may not exist yet: its nearest existing parent is where it will be.
fs::path nearest_existing(fs::path path) {
  std::error_code ec;
  while (!fs::exists(path, ec) && path.has_parent_path() && path != path.parent_path())
    path = path.parent_path();
  return path;
}

bool mounted_btrfs(const fs::path& mount_point) {
  auto root = is_mount_point(mount_point);
  return root.ok() && *root && is_btrfs(mount_point);
}

}  // namespace

std::string filesystem_name(const fs::path& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return "unknown";
  switch (static_cast<unsigned long>(st.f_type)) {
    case BTRFS_SUPER_MAGIC: return "btrfs";
    case EXT4_SUPER_MAGIC: return "ext4";
    case XFS_SUPER_MAGIC: return "xfs";
    case TMPFS_MAGIC: return "tmpfs";
    case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
    default: return "a filesystem of type 0x" + [&] {
      char buf[20];
      std::snprintf(buf, sizeof buf, "%lx", static_cast<unsigned long>(st.f_type));
      return std::string(buf);
    }();
  }
}

bool is_btrfs(const fs::path& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 &&
         static_cast<unsigned long>(st.f_type) == BTRFS_SUPER_MAGIC;
}

BtrfsVolume::BtrfsVolume(fs::path data_dir, std::uint64_t volume_mib, LoggerPtr log)
    : data_dir_(std::move(data_dir)),
      own_dir_(data_dir_ / "storage-btrfs"),
      volume_mib_(volume_mib),
      log_(log ? std::move(log) : null_logger()) {}

BtrfsVolume::State BtrfsVolume::state() const {
  if (is_btrfs(nearest_existing(data_dir_))) return State::data_dir_on_btrfs;
  std::error_code ec;
  if (!fs::exists(record_path(), ec)) return State::absent;
  return mounted_btrfs(mount_point()) ? State::mounted : State::unmounted;
}

std::string BtrfsVolume::describe(State state) const {
  switch (state) {
    case State::data_dir_on_btrfs:
      return "data dir " + data_dir_.string() + " is on btrfs: disks are reflinks";
    case State::mounted:
      return "btrfs volume " + image_path().string() + " mounted at " + mount_point().string();
    case State::unmounted:
      return "btrfs volume " + image_path().string() + " is not mounted (after a reboot); the " +
             "first use mounts it again" + (::geteuid() == 0 ? "" : ", which needs root");
    case State::absent:
      return data_dir_.string() + " is " + filesystem_name(nearest_existing(data_dir_)) +
             ", not btrfs; pass --data-dir on btrfs or let fcvm create a loop-mounted btrfs "
             "with 'fcvm setup storage' (as root)";
  }
  return {};
}

Result<VolumeRecord> BtrfsVolume::read_record() const {
  auto text = read_file(record_path());
  if (!text) return text.status().with_context(kPrefix);
  try {
    const auto j = nlohmann::json::parse(*text);
    if (j.at("version").get<int>() != VolumeRecord::kVersion) {
      return error(Errc::invalid_argument, kPrefix + record_path().string() + " has version " +
                                               j.at("version").dump() + "; this fcvm reads " +
                                               std::to_string(VolumeRecord::kVersion));
    }
    return VolumeRecord{j.at("image").get<std::string>(), j.at("mount_point").get<std::string>(),
                        j.at("size_mib").get<std::uint64_t>()};
  } catch (const nlohmann::json::exception& e) {
    return error(Errc::invalid_argument, kPrefix + record_path().string() + " is damaged (" +
                                             e.what() + "); delete it and run 'fcvm setup storage'");
  }
}

Status BtrfsVolume::mount_volume(const VolumeRecord& record) const {
  if (::geteuid() != 0) {
    return error(Errc::unavailable, kPrefix + "mounting the btrfs volume " + record.image.string() +
                                        " needs root; run 'fcvm setup storage' as root");
  }
  std::error_code ec;
  fs::create_directories(record.mount_point, ec);
  if (ec) return error(Errc::io, kPrefix + "create " + record.mount_point.string() + ": " + ec.message());
  ::chmod(record.mount_point.c_str(), 0700);
  auto loop = LoopDevice::attach(record.image);
  if (!loop) return loop.status().with_context(kPrefix);
  auto mount = Mount::create(loop->device(), record.mount_point, "btrfs", MS_NOATIME);
  if (!mount) return mount.status().with_context(kPrefix);
  // From here the mount is the device's only user: unmounting it detaches the device.
  mount->release();
  loop->release();
  log_->info("mounted btrfs volume " + record.image.string() + " at " + record.mount_point.string());
  return ok_status();
}

Result<fs::path> BtrfsVolume::ready() const {
  switch (state()) {
    case State::data_dir_on_btrfs: return own_dir_;
    case State::mounted: return mount_point();
    case State::absent: return error(Errc::unavailable, kPrefix + describe(State::absent));
    case State::unmounted: break;
  }
  auto lock = DirLock::acquire(own_dir_);
  if (!lock) return lock.status();
  if (state() == State::mounted) return mount_point();  // another process got there first
  auto record = read_record();
  if (!record) return record.status();
  FCVM_RETURN_IF_ERROR(mount_volume(*record));
  return mount_point();
}

Result<std::string> BtrfsVolume::setup() const {
  const State before = state();
  if (before == State::data_dir_on_btrfs || before == State::mounted) return describe(before);
  if (::geteuid() != 0) {
    return error(Errc::unavailable,
                 kPrefix + "'fcvm setup storage' must run as root (it attaches a loop device and "
                           "mounts a filesystem); run it with sudo");
  }
  if (before == State::unmounted) {
    auto root = ready();
    if (!root) return root.status();
    return "btrfs volume " + image_path().string() + " mounted again at " + mount_point().string();
  }
  auto mkfs = require_tool("mkfs.btrfs", "btrfs-progs");
  if (!mkfs) return mkfs.status().with_context(kPrefix);

  auto lock = DirLock::acquire(own_dir_);
  if (!lock) return lock.status();
  if (state() != State::absent) return describe(state());  // set up meanwhile

  const VolumeRecord record{image_path(), mount_point(), volume_mib_};
  const fs::path tmp = own_dir_ / ".volume.btrfs.tmp";  // ours: we hold the lock
  ::unlink(tmp.c_str());
  auto undo = [&](Status failure) {
    ::unlink(tmp.c_str());
    ::unlink(record.image.c_str());
    ::rmdir(record.mount_point.c_str());
    return failure;
  };
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) return undo(errno_status(kPrefix + "create " + tmp.string()));
    if (::ftruncate(fd.get(), static_cast<off_t>(record.size_mib << 20)) != 0)
      return undo(errno_status(kPrefix + "size " + tmp.string()));
  }
  auto made = run_command({mkfs->string(), "-q", "-L", "fcvm", tmp.string()});
  if (!made) return undo(made.status().with_context(kPrefix + "mkfs.btrfs " + tmp.string() + ": "));
  if (::rename(tmp.c_str(), record.image.c_str()) != 0)
    return undo(errno_status(kPrefix + "rename " + tmp.string()));
  if (Status st = mount_volume(record); !st.ok()) return undo(st);
  const nlohmann::json j = {{"version", VolumeRecord::kVersion},
                            {"image", record.image.string()},
                            {"mount_point", record.mount_point.string()},
                            {"size_mib", record.size_mib}};
  if (Status st = write_file_atomic(record_path(), j.dump(2) + "\n", 0600); !st.ok()) {
    (void)Mount::adopt(record.mount_point).unmount();
    return undo(st.with_context(kPrefix));
  }
  return "created a " + std::to_string(record.size_mib) + " MiB btrfs volume in " +
         record.image.string() + ", mounted at " + record.mount_point.string();
}

}  // namespace fcvm::btrfs
