#include "btrfs_storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string_view>
#include <system_error>
#include <utility>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm/file_clone.h"
#include "fcvm/unique_fd.h"
#include "dir_lock.h"
#include "host_tools.h"

namespace fcvm::btrfs {
namespace {

namespace fs = std::filesystem;

const std::string kPrefix = std::string(kPluginName) + ": ";
constexpr std::uint64_t kBlock = 4096;

Status fail(Errc code, const std::string& message) { return error(code, kPrefix + message); }

Result<std::uint64_t> config_mib(const std::string& key, const nlohmann::json& value,
                                 std::uint64_t min) {
  // Parsed files give unsigned numbers, JSON built in code signed ones: take either.
  if (!value.is_number_integer() || value.get<std::int64_t>() < static_cast<std::int64_t>(min)) {
    return error(Errc::invalid_argument, "config key \"" + key +
                                             "\" must be an integer of at least " +
                                             std::to_string(min));
  }
  return value.get<std::uint64_t>();
}

// What an ext4 holding `rootfs` needs: data blocks and inodes.
struct RootfsSize {
  std::uint64_t bytes = 0;
  std::uint64_t inodes = 0;
};

Result<RootfsSize> measure(const fs::path& rootfs) {
  RootfsSize size;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(rootfs, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) return errno_status(kPrefix + "stat " + it->path().string());
    ++size.inodes;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)) {
      size.bytes += (static_cast<std::uint64_t>(st.st_size) + kBlock - 1) / kBlock * kBlock;
    }
  }
  if (ec) return fail(Errc::io, "reading " + rootfs.string() + ": " + ec.message());
  return size;
}

Result<BaseImage> existing_base(const std::string& digest, const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return error(Errc::not_found, path.string());
  return BaseImage{digest, path, static_cast<std::uint64_t>(st.st_size)};
}

Status check_lease(const DiskLease& lease) {
  if (lease.plugin != kPluginName) {
    return fail(Errc::invalid_argument,
                "this disk lease belongs to \"" + lease.plugin + "\", not " + kPluginName);
  }
  return ok_status();
}

const Drive* root_drive(const DiskLease& lease) {
  for (const auto& d : lease.drives) {
    if (d.id == kRootDrive) return &d;
  }
  return nullptr;
}

bool same_filesystem(const fs::path& a, const fs::path& b) {
  struct stat sa {}, sb{};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev;
}

Result<std::string> random_name() {
  unsigned char bytes[8];
  UniqueFd fd(::open("/dev/urandom", O_RDONLY | O_CLOEXEC));
  if (!fd || ::read(fd.get(), bytes, sizeof bytes) != static_cast<ssize_t>(sizeof bytes))
    return errno_status(kPrefix + "read /dev/urandom");
  std::string out;
  for (unsigned char b : bytes) {
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", b);
    out += hex;
  }
  return out;
}

bool is_under(const fs::path& path, const fs::path& dir) {
  const auto rel = path.lexically_normal().lexically_relative(dir.lexically_normal());
  return !rel.empty() && *rel.begin() != ".." && rel != ".";
}

}  // namespace

Result<Options> Options::from_json(const nlohmann::json& config) {
  Options options;
  if (config.is_null()) return options;
  // No plugin-name prefix here: the host adds it to factory errors.
  if (!config.is_object()) return error(Errc::invalid_argument, "config must be a JSON object");
  for (const auto& [key, value] : config.items()) {
    if (key == "reflink") {
      const std::string v = value.is_string() ? value.get<std::string>() : "";
      if (v == "required") {
        options.reflink = ReflinkPolicy::required;
      } else if (v == "auto") {
        options.reflink = ReflinkPolicy::automatic;
      } else {
        return error(Errc::invalid_argument,
                     "config key \"reflink\" must be \"required\" or \"auto\", got " + value.dump());
      }
    } else if (key == "headroom_mib") {
      auto mib = config_mib(key, value, 8);
      if (!mib) return mib.status();
      options.headroom_mib = *mib;
    } else if (key == "volume_mib") {
      auto mib = config_mib(key, value, 256);  // mkfs.btrfs wants about 110 MiB at least
      if (!mib) return mib.status();
      options.volume_mib = *mib;
    } else {
      return error(Errc::invalid_argument, "unknown config key \"" + key +
                                               "\" (known keys: reflink, headroom_mib, volume_mib)");
    }
  }
  return options;
}

BtrfsStorage::BtrfsStorage(fs::path data_dir, Options options, LoggerPtr log)
    : volume_(std::move(data_dir), options.volume_mib, log),
      options_(options),
      log_(log ? std::move(log) : null_logger()) {}

Probe BtrfsStorage::probe() {
  if (find_tool("mkfs.ext4").empty())
    return Probe::no("mkfs.ext4 not found; install it with 'apt-get install e2fsprogs'");
  const auto state = volume_.state();
  switch (state) {
    case BtrfsVolume::State::data_dir_on_btrfs:
    case BtrfsVolume::State::mounted:
      return Probe::yes(volume_.describe(state));
    case BtrfsVolume::State::unmounted:
      return ::geteuid() == 0 ? Probe::yes(volume_.describe(state)) : Probe::no(volume_.describe(state));
    case BtrfsVolume::State::absent:
      if (options_.reflink == ReflinkPolicy::automatic) {
        return Probe::yes(volume_.describe(state) + " (reflink \"auto\": disks are full copies until then)");
      }
      return Probe::no(volume_.describe(state));
  }
  return Probe::no("unknown volume state");
}

Result<std::string> BtrfsStorage::setup_host() { return volume_.setup(); }

Result<fs::path> BtrfsStorage::root() {
  auto ready = volume_.ready();
  if (ready || options_.reflink == ReflinkPolicy::required ||
      volume_.state() != BtrfsVolume::State::absent) {
    return ready;
  }
  log_->warn(volume_.describe(BtrfsVolume::State::absent) +
             "; reflink is \"auto\", so every disk is a full sparse copy");
  return volume_.own_dir();
}

Result<BaseImage> BtrfsStorage::prepare_base(const ImageRootfs& image) {
  const std::string hex = digest_hex(image.digest);
  if (hex.empty()) {
    return fail(Errc::invalid_argument, "image digest \"" + image.digest + "\" is not sha256:<64 hex>");
  }
  auto dir = root();
  if (!dir) return dir.status();
  const fs::path bases = *dir / "bases";
  const fs::path out = bases / (hex + ".ext4");
  if (auto base = existing_base(image.digest, out)) return base;
  if (!fs::is_directory(image.rootfs)) {
    return fail(Errc::not_found, "rootfs " + image.rootfs.string() + " of image " + image.digest +
                                     " is not a directory");
  }
  auto lock = DirLock::acquire(bases);
  if (!lock) return lock.status();
  ::chmod(dir->c_str(), 0700);
  // Another caller may have built it while this one waited.
  if (auto base = existing_base(image.digest, out)) return base;
  return build_base(image, out);
}

Result<BaseImage> BtrfsStorage::build_base(const ImageRootfs& image, const fs::path& out) {
  auto mkfs = require_tool("mkfs.ext4", "e2fsprogs");
  if (!mkfs) return mkfs.status().with_context(kPrefix);
  auto size = measure(image.rootfs);
  if (!size) return size.status();
  const auto started = std::chrono::steady_clock::now();
  // Room for metadata (about 1/8 of the data, plus the journal) and the guest's headroom.
  const std::uint64_t mib = (size->bytes + size->bytes / 8 + (1u << 20) - 1) / (1u << 20) + 64 +
                            options_.headroom_mib;
  const std::uint64_t inodes = size->inodes + options_.headroom_mib * 64 + 1024;
  const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".tmp");
  // Builds killed half-way left their temp files; every build holds the lock, so any
  // temp file now is such a leftover.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(out.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.front() == '.' && name.ends_with(".tmp")) ::unlink(entry.path().c_str());
  }
  auto discard = [&](Status st) {
    ::unlink(tmp.c_str());
    return st;
  };
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) return discard(errno_status(kPrefix + "create " + tmp.string()));
  }
  // -d fills it from the directory without mounting; lazy init keeps the free space sparse,
  // so a reflinked disk shares everything but what the guest writes.
  auto built = run_command({mkfs->string(), "-q", "-F", "-m", "0", "-N", std::to_string(inodes),
                            "-L", "root", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-d",
                            image.rootfs.string(), tmp.string(), std::to_string(mib) + "M"});
  if (!built) {
    return discard(built.status().with_context(kPrefix + "building the base of " + image.digest + ": "));
  }
  {
    UniqueFd fd(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd || ::fsync(fd.get()) != 0) return discard(errno_status(kPrefix + "fsync " + tmp.string()));
  }
  if (::rename(tmp.c_str(), out.c_str()) != 0) {
    return discard(errno_status(kPrefix + "rename " + tmp.string() + " to " + out.string()));
  }
  FCVM_RETURN_IF_ERROR(fsync_dir(out.parent_path()).with_context(kPrefix));
  auto base = existing_base(image.digest, out);
  if (!base) return fail(Errc::io, out.string() + " vanished after it was built");
  char took[48];
  std::snprintf(took, sizeof took, "%.2f s, %llu MiB", 
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
                static_cast<unsigned long long>(mib));
  log_->info("built base of " + image.digest.substr(0, 19) + " in " + took);
  return base;
}

Result<DiskLease> BtrfsStorage::place_disk(const fs::path& from, const fs::path& dir,
                                           const std::string& digest, const char* what) {
  auto home = root();
  if (!home) return home.status();
  std::error_code ec;
  const bool made_dir = fs::create_directories(dir, ec);
  if (ec) return fail(Errc::io, "create " + dir.string() + ": " + ec.message());
  const fs::path name = dir / kDiskFile;
  fs::path disk = name;
  fs::path disk_dir;  // R/disks/<random> when the disk cannot live in `dir`
  auto undo = [&](Status failure) {
    if (!disk_dir.empty()) {
      ::unlink(disk.c_str());
      ::rmdir(disk_dir.c_str());
    }
    if (made_dir) ::rmdir(dir.c_str());
    return failure.with_context(kPrefix + what + ": ");
  };
  if (!same_filesystem(dir, *home)) {
    auto id = random_name();
    if (!id) return undo(id.status());
    disk_dir = *home / "disks" / *id;
    fs::create_directories(disk_dir, ec);
    if (ec) return undo(error(Errc::io, "create " + disk_dir.string() + ": " + ec.message()));
    disk = disk_dir / kDiskFile;
  }
  bool reflinked = false;
  if (Status st = clone_file(from, disk, CloneMode::create_new, &reflinked); !st.ok()) {
    if (st.code() == Errc::already_exists) disk_dir.clear();  // not ours to delete
    return undo(st);
  }
  if (!reflinked) {
    if (options_.reflink == ReflinkPolicy::required) {
      ::unlink(disk.c_str());
      return undo(error(Errc::unavailable,
                        disk.parent_path().string() + " (" + filesystem_name(disk.parent_path()) +
                            ") cannot reflink; put the data dir on btrfs, run 'fcvm setup "
                            "storage', or set plugin_config." + kPluginName +
                            ".reflink to \"auto\" to accept full copies"));
    }
    log_->warn(std::string(what) + ": " + disk.string() + " is a full copy, not a reflink");
  }
  if (!disk_dir.empty() && ::symlink(disk.c_str(), name.c_str()) != 0) {
    return undo(errno_status("link " + name.string() + " to " + disk.string()));
  }
  DiskLease lease;
  lease.plugin = kPluginName;
  lease.drives = {Drive{kRootDrive, name, false}};
  lease.root = RootPlan{RootPlan::Mode::direct, kRootDrive, "ext4", "", ""};
  lease.extra = {{"base_digest", digest}};
  if (!disk_dir.empty()) lease.extra["disk_dir"] = disk_dir.string();
  return lease;
}

Result<DiskLease> BtrfsStorage::create_disks(const BaseImage& base, const fs::path& vm_dir,
                                             const DiskOptions&) {
  struct stat st {};
  if (::stat(base.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return fail(Errc::not_found, "base " + base.path.string() + " of image " + base.digest +
                                     " is missing; prepare it first");
  }
  return place_disk(base.path, vm_dir, base.digest, "create disks");
}

Result<DiskLease> BtrfsStorage::snapshot_disks(const DiskLease& vm, const fs::path& snapshot_dir) {
  FCVM_RETURN_IF_ERROR(check_lease(vm));
  const Drive* drive = root_drive(vm);
  if (drive == nullptr) return fail(Errc::invalid_argument, "snapshot disks: the lease has no root drive");
  return place_disk(drive->path, snapshot_dir, vm.extra.value("base_digest", ""), "snapshot disks");
}

Result<DiskLease> BtrfsStorage::clone_disks(const DiskLease& snapshot, const fs::path& clone_dir) {
  FCVM_RETURN_IF_ERROR(check_lease(snapshot));
  const Drive* drive = root_drive(snapshot);
  if (drive == nullptr) return fail(Errc::invalid_argument, "clone disks: the lease has no root drive");
  return place_disk(drive->path, clone_dir, snapshot.extra.value("base_digest", ""), "clone disks");
}

Status BtrfsStorage::destroy(const DiskLease& lease) {
  FCVM_RETURN_IF_ERROR(check_lease(lease));
  const Drive* drive = root_drive(lease);
  if (drive == nullptr) return ok_status();
  // The drive is a name in the VM's dir: its disk, or a symlink to the disk in disk_dir.
  struct stat st {};
  if (::lstat(drive->path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
      drive->path.parent_path().filename() == "bases") {
    return fail(Errc::internal, "refusing to delete " + drive->path.string() + ", a shared base");
  }
  if (::unlink(drive->path.c_str()) != 0 && errno != ENOENT)
    return errno_status(kPrefix + "delete " + drive->path.string());
  const std::string disk_dir = lease.extra.value("disk_dir", "");
  if (disk_dir.empty()) return ok_status();
  // Only ever R/disks/<name>, for either place R can be.
  const fs::path dir = fs::path(disk_dir).lexically_normal();
  if (!is_under(dir, volume_.own_dir() / "disks") && !is_under(dir, volume_.mount_point() / "disks")) {
    return fail(Errc::internal, "refusing to delete " + dir.string() + ": not a disk dir of " +
                                    kPluginName);
  }
  const fs::path disk = dir / kDiskFile;
  if (::unlink(disk.c_str()) != 0 && errno != ENOENT) return errno_status(kPrefix + "delete " + disk.string());
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return errno_status(kPrefix + "delete " + dir.string());
  return ok_status();
}

}  // namespace fcvm::btrfs
