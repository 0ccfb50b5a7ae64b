#include "squashfs_storage.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm/unique_fd.h"
#include "fcvm/file_clone.h"
#include "fcvm/file_lock.h"
#include "fcvm/program_path.h"

namespace fcvm::squashfs {
namespace {

namespace fs = std::filesystem;

const std::string kPrefix = std::string(kPluginName) + ": ";
constexpr std::uint64_t kMinScratchMib = 8;  // below this mkfs.ext4 leaves no room to write

Status fail(Errc code, const std::string& message) { return error(code, kPrefix + message); }

Result<fs::path> require_tool(const std::string& name) {
  fs::path path = find_program(name, ProgramSearch::path_and_sbin);
  if (path.empty()) {
    return fail(Errc::unavailable, name + " not found; install it with 'apt-get install " +
                                       (name == "mksquashfs" ? "squashfs-tools" : "e2fsprogs") +
                                       "'");
  }
  return path;
}

std::string format_size(std::uint64_t bytes) {
  char buf[32];
  if (bytes >= (1u << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / 1024);
  }
  return buf;
}

Result<BaseImage> existing_base(const std::string& digest, const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return error(Errc::not_found, path.string());
  }
  return BaseImage{digest, path, static_cast<std::uint64_t>(st.st_size)};
}

// The build lock of one digest: bases/<hex>/.lock, removed by its holder when done (and
// the directory too after a failed build, when nobody else waits).
class BuildLock {
 public:
  static Result<BuildLock> acquire(const fs::path& dir) {
    for (;;) {
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) return fail(Errc::io, "create " + dir.string() + ": " + ec.message());
      auto lock = FileLock::acquire(dir / ".lock", FileLock::Mode::exclusive,
                                    FileLock::Lifetime::removed_on_release);
      if (lock) return BuildLock(dir, std::move(*lock));
      // not_found: the dir was removed between the two calls.
      if (lock.status().code() != Errc::not_found) return lock.status().with_context(kPrefix);
    }
  }

  BuildLock(BuildLock&&) noexcept = default;
  BuildLock& operator=(BuildLock&&) = delete;
  ~BuildLock() {
    if (!lock_.held()) return;
    lock_.release();
    ::rmdir(dir_.c_str());  // only succeeds when no base was built and nobody waits
  }

 private:
  BuildLock(fs::path dir, FileLock lock) : dir_(std::move(dir)), lock_(std::move(lock)) {}
  fs::path dir_;
  FileLock lock_;
};

Status check_lease(const DiskLease& lease) {
  if (lease.plugin != kPluginName) {
    return fail(Errc::invalid_argument,
                "this disk lease belongs to \"" + lease.plugin + "\", not " + kPluginName);
  }
  return ok_status();
}

const Drive* find_drive(const DiskLease& lease, const char* id) {
  for (const auto& d : lease.drives) {
    if (d.id == id) return &d;
  }
  return nullptr;
}

// Creates `dir` if missing; the returned flag says whether this call created it.
Result<bool> make_dir(const fs::path& dir) {
  std::error_code ec;
  bool created = fs::create_directories(dir, ec);
  if (ec) return fail(Errc::io, "create " + dir.string() + ": " + ec.message());
  return created;
}

}  // namespace

Result<Options> Options::from_json(const nlohmann::json& config) {
  Options options;
  if (config.is_null()) return options;
  // No plugin-name prefix here: the host adds it to factory errors.
  if (!config.is_object()) return error(Errc::invalid_argument, "config must be a JSON object");
  for (const auto& [key, value] : config.items()) {
    if (key == "scratch_mib") {
      // Parsed files give unsigned numbers, JSON built in code signed ones: take either.
      if (!value.is_number_integer() || value.get<std::int64_t>() < std::int64_t{kMinScratchMib}) {
        return error(Errc::invalid_argument,
                     "config key \"scratch_mib\" must be an integer of at least " +
                         std::to_string(kMinScratchMib));
      }
      options.scratch_mib = value.get<std::uint64_t>();
    } else {
      return error(Errc::invalid_argument,
                   "unknown config key \"" + key + "\" (known keys: scratch_mib)");
    }
  }
  return options;
}

SquashfsStorage::SquashfsStorage(std::filesystem::path dir, Options options, LoggerPtr log)
    : dir_(std::move(dir)), options_(options), log_(log ? std::move(log) : null_logger()) {}

fs::path SquashfsStorage::base_path(const std::string& hex) const {
  return dir_ / "bases" / hex / "rootfs.sqfs";
}

Probe SquashfsStorage::probe() {
  std::vector<std::string> missing;
  for (const char* tool : {"mksquashfs", "mkfs.ext4"}) {
    if (find_program(tool, ProgramSearch::path_and_sbin).empty()) missing.push_back(tool);
  }
  if (!missing.empty()) {
    std::string names = missing.front() + (missing.size() > 1 ? " and " + missing.back() : "");
    return Probe::no(names +
                     " not found; install them with 'apt-get install squashfs-tools e2fsprogs'");
  }
  return Probe::yes("the guest kernel needs squashfs (zstd), overlayfs and ext4; fcvm's has them");
}

Result<BaseImage> SquashfsStorage::prepare_base(const ImageRootfs& image) {
  const std::string hex = digest_hex(image.digest);
  if (hex.empty()) {
    return fail(Errc::invalid_argument,
                "image digest \"" + image.digest + "\" is not sha256:<64 hex>");
  }
  if (auto base = existing_base(image.digest, base_path(hex))) return base;
  if (!fs::is_directory(image.rootfs)) {
    return fail(Errc::not_found, "rootfs " + image.rootfs.string() + " of image " + image.digest +
                                     " is not a directory");
  }
  auto lock = BuildLock::acquire(base_path(hex).parent_path());
  if (!lock) return lock.status();
  // Another caller may have built it while this one waited.
  if (auto base = existing_base(image.digest, base_path(hex))) return base;
  return build_base(image, hex);
}

Result<BaseImage> SquashfsStorage::build_base(const ImageRootfs& image, const std::string& hex) {
  auto mksquashfs = require_tool("mksquashfs");
  if (!mksquashfs) return mksquashfs.status();
  const fs::path out = base_path(hex);
  const fs::path tmp = out.parent_path() / ".rootfs.sqfs.tmp";  // ours: we hold the lock
  ::unlink(tmp.c_str());                                        // left by a build that crashed
  const auto started = std::chrono::steady_clock::now();

  // Ownership and modes stay as unpacked; zstd for size and fast guest reads.
  auto built = run_command({mksquashfs->string(), image.rootfs.string(), tmp.string(), "-comp",
                            "zstd", "-noappend", "-quiet", "-no-progress"});
  auto discard = [&](Status st) {
    ::unlink(tmp.c_str());
    return st;
  };
  if (!built) {
    return discard(
        built.status().with_context(kPrefix + "building the base of " + image.digest + ": "));
  }
  {
    UniqueFd fd(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd || ::fsync(fd.get()) != 0)
      return discard(errno_status(kPrefix + "fsync " + tmp.string()));
  }
  if (::rename(tmp.c_str(), out.c_str()) != 0) {
    return discard(errno_status(kPrefix + "rename " + tmp.string() + " to " + out.string()));
  }
  FCVM_RETURN_IF_ERROR(fsync_dir(out.parent_path()).with_context(kPrefix));
  FCVM_RETURN_IF_ERROR(fsync_dir(out.parent_path().parent_path()).with_context(kPrefix));

  auto base = existing_base(image.digest, out);
  if (!base) return fail(Errc::io, out.string() + " vanished after it was built");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  char took[32];
  std::snprintf(took, sizeof took, "%.2f s", seconds);
  log_->info("built base of " + image.digest.substr(0, 19) + " in " + took + ": " +
             format_size(base->bytes));
  return base;
}

Result<DiskLease> SquashfsStorage::create_disks(const BaseImage& base, const fs::path& vm_dir,
                                                const DiskOptions& options) {
  struct stat st {};
  if (::stat(base.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return fail(Errc::not_found, "base " + base.path.string() + " of image " + base.digest +
                                     " is missing; prepare it first");
  }
  const std::uint64_t mib = options.scratch_mib != 0 ? options.scratch_mib : options_.scratch_mib;
  if (mib < kMinScratchMib) {
    return fail(Errc::invalid_argument, "a scratch disk of " + std::to_string(mib) +
                                            " MiB is too small; give at least " +
                                            std::to_string(kMinScratchMib));
  }
  auto mkfs = require_tool("mkfs.ext4");
  if (!mkfs) return mkfs.status();
  auto made_dir = make_dir(vm_dir);
  if (!made_dir) return made_dir.status();

  const fs::path scratch = vm_dir / kScratchFile;
  bool created_file = false;
  auto undo = [&](Status failure) {
    if (created_file) ::unlink(scratch.c_str());
    if (*made_dir) ::rmdir(vm_dir.c_str());
    return failure;
  };
  {
    UniqueFd fd(::open(scratch.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) {
      return undo(errno == EEXIST ? fail(Errc::already_exists, scratch.string() + " already exists")
                                  : errno_status(kPrefix + "create " + scratch.string()));
    }
    created_file = true;
    if (::ftruncate(fd.get(), static_cast<off_t>(mib << 20)) != 0) {
      return undo(errno_status(kPrefix + "size " + scratch.string()));
    }
  }
  // Lazy init keeps the file sparse (about 1 MiB allocated per GiB) and mkfs fast; the
  // journal stays so a VM killed mid-write leaves a recoverable upper layer.
  auto made =
      run_command({mkfs->string(), "-q", "-F", "-m", "0", "-L", kScratchDrive, "-E",
                   "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", scratch.string()});
  if (!made)
    return undo(made.status().with_context(kPrefix + "formatting " + scratch.string() + ": "));

  DiskLease lease;
  lease.plugin = kPluginName;
  lease.drives = {Drive{kRootDrive, base.path, true}, Drive{kScratchDrive, scratch, false}};
  lease.root = RootPlan{RootPlan::Mode::overlay, kRootDrive, "squashfs", kScratchDrive, "ext4"};
  lease.extra = {{"base_digest", base.digest}, {"scratch_mib", mib}};
  return lease;
}

Result<DiskLease> SquashfsStorage::copy_scratch(const DiskLease& lease, const fs::path& dir,
                                                const char* what) {
  FCVM_RETURN_IF_ERROR(check_lease(lease));
  const Drive* scratch = find_drive(lease, kScratchDrive);
  if (scratch == nullptr || find_drive(lease, kRootDrive) == nullptr) {
    return fail(Errc::invalid_argument,
                std::string("cannot ") + what + ": the lease lacks the root or scratch drive");
  }
  auto made_dir = make_dir(dir);
  if (!made_dir) return made_dir.status();
  const fs::path target = dir / scratch->path.filename();
  bool reflinked = false;
  Status copied = clone_file(scratch->path, target, CloneMode::create_new, &reflinked);
  if (!copied.ok()) {
    if (*made_dir) ::rmdir(dir.c_str());
    return copied.with_context(kPrefix + what + ": ");
  }
  log_->debug(std::string(what) + ": " + scratch->path.string() + " -> " + target.string() +
              (reflinked ? " (reflink)" : " (sparse copy)"));
  DiskLease out = lease;
  for (auto& d : out.drives) {
    if (d.id == kScratchDrive) d.path = target;
  }
  return out;
}

Result<DiskLease> SquashfsStorage::snapshot_disks(const DiskLease& vm,
                                                  const fs::path& snapshot_dir) {
  return copy_scratch(vm, snapshot_dir, "snapshot disks");
}

Result<DiskLease> SquashfsStorage::clone_disks(const DiskLease& snapshot,
                                               const fs::path& clone_dir) {
  return copy_scratch(snapshot, clone_dir, "clone disks");
}

Status SquashfsStorage::destroy(const DiskLease& lease) {
  FCVM_RETURN_IF_ERROR(check_lease(lease));
  const fs::path bases = (dir_ / "bases").lexically_normal();
  for (const auto& d : lease.drives) {
    if (d.id != kScratchDrive) continue;  // the root drive is the shared base
    const fs::path path = d.path.lexically_normal();
    auto [end, ignored] = std::mismatch(bases.begin(), bases.end(), path.begin(), path.end());
    if (end == bases.end()) {
      return fail(Errc::internal, "refusing to delete " + path.string() + ", a shared base");
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return errno_status(kPrefix + "delete " + path.string());
    }
  }
  return ok_status();
}

}  // namespace fcvm::squashfs
