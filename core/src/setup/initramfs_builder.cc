#include "setup/initramfs_builder.h"

#include <fcntl.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm/unique_fd.h"
#include "fcvm/file_lock.h"
#include "fcvm/temp_dir.h"
#include "setup/sha256.h"
#include "setup/shared_asset.h"

namespace fcvm {
namespace {

// Bumped whenever the archive's layout changes, so old cache entries are not reused.
constexpr std::string_view kLayoutVersion = "fcvm-initramfs-2";
constexpr std::string_view kStagePrefix = ".stage-";

// Directories the agent mounts on or writes to.
constexpr const char* kDirectories[] = {"dev", "proc", "sys", "run", "tmp", "etc", "root"};

// Checks that a path inside the archive is relative and stays inside it.
Status check_archive_path(const std::string& path) {
  const std::filesystem::path p(path);
  bool escapes = p.empty() || p.is_absolute();
  for (const auto& part : p) escapes = escapes || part == ".." || part == ".";
  if (escapes) {
    return error(Errc::invalid_argument,
                 "initramfs entry '" + path + "' must be a relative path inside the archive");
  }
  return ok_status();
}

// The last non-empty line of a small log file, for error messages.
std::string last_line(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

// Creates `dir` if needed and gives it exactly `mode`.
Status make_dir(const std::filesystem::path& dir, mode_t mode) {
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) return errno_status("mkdir " + dir.string());
  if (::chmod(dir.c_str(), mode) != 0) return errno_status("chmod " + dir.string());
  return ok_status();
}

// Creates the parents of `path` below `root`, each 0755.
Status make_parents(const std::filesystem::path& root, const std::string& path) {
  std::filesystem::path dir = root;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  for (const auto& part : parent) {
    dir /= part;
    FCVM_RETURN_IF_ERROR(make_dir(dir, 0755));
  }
  return ok_status();
}

Status copy_into(const std::filesystem::path& from, const std::filesystem::path& to, mode_t mode) {
  std::error_code ec;
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return error(Errc::io, "copy " + from.string() + " into the initramfs: " + ec.message());
  if (::chmod(to.c_str(), mode) != 0) return errno_status("chmod " + to.string());
  return ok_status();
}

// cpio records each entry's mtime (--reproducible does not clamp it), so staging at another
// second would change the archive: every entry gets the epoch instead.
Status clamp_mtimes(const std::filesystem::path& root) {
  const timespec epoch[2] = {{0, 0}, {0, 0}};
  auto clamp = [&](const std::filesystem::path& p) {
    return ::utimensat(AT_FDCWD, p.c_str(), epoch, AT_SYMLINK_NOFOLLOW) == 0
               ? ok_status()
               : errno_status("set the mtime of " + p.string());
  };
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec); !ec && it != decltype(it)();
       it.increment(ec)) {
    FCVM_RETURN_IF_ERROR(clamp(it->path()));
  }
  if (ec) return error(Errc::io, "list " + root.string() + ": " + ec.message());
  return clamp(root);
}

// Lists every entry under `root` as "./relative/path", parents before children, sorted, so
// the archive's bytes depend only on its contents.
std::string file_list(const std::filesystem::path& root) {
  std::vector<std::string> entries;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    entries.push_back("./" + e.path().lexically_relative(root).string());  // not relative(): it follows symlinks
  }
  std::sort(entries.begin(), entries.end());
  std::string list(".");
  list.push_back('\0');
  for (const auto& e : entries) {
    list += e;
    list.push_back('\0');
  }
  return list;
}

}  // namespace

InitramfsBuilder::InitramfsBuilder(std::filesystem::path data_dir, LoggerPtr log)
    : data_dir_(std::move(data_dir)), log_(log ? std::move(log) : null_logger()) {}

Result<std::string> InitramfsBuilder::cache_key(const InitramfsContents& contents) const {
  std::string input(kLayoutVersion);
  auto add = [&](std::string_view label, std::string_view bytes) {
    input += "\n" + std::string(label) + " " + std::to_string(bytes.size()) + "\n";
    input += bytes;
  };
  auto agent = read_file(contents.agent_binary);
  if (!agent) {
    return error(Errc::not_found,
                 "fc-agent not found at " + contents.agent_binary.string() +
                     ": build it (cmake --build <build-dir> --target fc-agent) or reinstall fcvm");
  }
  add("init", *agent);
  for (const auto& f : contents.extra_files) {
    FCVM_RETURN_IF_ERROR(check_archive_path(f.path));
    auto bytes = read_file(f.source);
    if (!bytes) return bytes.status().with_context("initramfs extra file: ");
    add("file " + f.path + " " + std::to_string(f.mode & 07777), *bytes);
  }
  for (const auto& l : contents.symlinks) {
    FCVM_RETURN_IF_ERROR(check_archive_path(l.path));
    add("symlink " + l.path, l.target);
  }
  return sha256_hex(input).substr(0, 16);
}

Result<std::filesystem::path> InitramfsBuilder::ensure(const std::filesystem::path& agent_binary) const {
  InitramfsContents contents;
  contents.agent_binary = agent_binary;
  return ensure(contents);
}

Result<std::filesystem::path> InitramfsBuilder::shared(const std::filesystem::path& initrd) const {
  FCVM_RETURN_IF_ERROR(share_asset(data_dir_, initrd.parent_path()).with_context("initramfs: "));
  return initrd;
}

Result<std::filesystem::path> InitramfsBuilder::ensure(const InitramfsContents& contents) const {
  auto key = cache_key(contents);
  if (!key) return key.status();
  const auto key_dir = initramfs_dir() / *key;
  const auto initrd = key_dir / "initrd.gz";
  std::error_code ec;
  if (std::filesystem::is_regular_file(initrd, ec)) return shared(initrd);
  std::filesystem::create_directories(initramfs_dir(), ec);
  if (ec) return error(Errc::io, "initramfs: create " + initramfs_dir().string() + ": " + ec.message());
  // Builders take turns, so one sweeping stale staging dirs never races another's.
  auto lock = FileLock::acquire(initramfs_dir() / ".lock", FileLock::Mode::exclusive);
  if (!lock) return lock.status().with_context("initramfs: ");
  if (std::filesystem::is_regular_file(initrd, ec)) return shared(initrd);  // built while we waited
  log_->info("building initramfs " + *key + " from " + contents.agent_binary.string());
  Status built = build(contents, key_dir);
  if (!built.ok()) return built.with_context("initramfs: ");
  return shared(initrd);
}

Status InitramfsBuilder::build(const InitramfsContents& contents,
                               const std::filesystem::path& key_dir) const {
  std::error_code ec;
  std::filesystem::create_directories(key_dir, ec);
  if (ec) return error(Errc::io, "create " + key_dir.string() + ": " + ec.message());
  TempDir::remove_stale(initramfs_dir(), kStagePrefix);
  auto stage_dir = TempDir::create(initramfs_dir(), kStagePrefix);
  if (!stage_dir) return stage_dir.status();
  const auto root = stage_dir->path() / "root";

  // Stage the tree. Modes are set explicitly: the archive must not depend on our umask.
  std::filesystem::create_directories(root, ec);
  if (ec) return error(Errc::io, "create " + root.string() + ": " + ec.message());
  FCVM_RETURN_IF_ERROR(make_dir(root, 0755));
  for (const char* d : kDirectories) {
    FCVM_RETURN_IF_ERROR(make_dir(root / d, std::string_view(d) == "tmp" ? 01777 : 0755));
  }
  FCVM_RETURN_IF_ERROR(copy_into(contents.agent_binary, root / "init", 0755));
  for (const auto& f : contents.extra_files) {
    FCVM_RETURN_IF_ERROR(make_parents(root, f.path));
    FCVM_RETURN_IF_ERROR(copy_into(f.source, root / f.path, f.mode));
  }
  for (const auto& l : contents.symlinks) {
    FCVM_RETURN_IF_ERROR(make_parents(root, l.path));
    if (::symlink(l.target.c_str(), (root / l.path).c_str()) != 0) {
      return errno_status("symlink " + l.path + " -> " + l.target + " in the initramfs");
    }
  }
  // Without CAP_MKNOD this fails; the agent then opens /dev/console after mounting devtmpfs.
  ::mknod((root / "dev/console").c_str(), S_IFCHR | 0600, makedev(5, 1));
  FCVM_RETURN_IF_ERROR(clamp_mtimes(root));

  const auto list_path = stage_dir->path() / "files";
  FCVM_RETURN_IF_ERROR(write_file_atomic(list_path, file_list(root)));
  UniqueFd list(::open(list_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!list) return errno_status("open " + list_path.string());
  const auto err_path = stage_dir->path() / "stderr";
  UniqueFd err(::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!err) return errno_status("create " + err_path.string());

  // The output goes to a temp file beside initrd.gz, renamed over it once complete.
  std::string tmp_name = (key_dir / ".initrd.gz.XXXXXX").string();
  UniqueFd out(::mkostemp(tmp_name.data(), O_CLOEXEC));
  if (!out) return errno_status("create a temp file in " + key_dir.string());
  struct TempFileGuard {
    std::string path;
    ~TempFileGuard() {
      if (!path.empty()) ::unlink(path.c_str());
    }
  } guard{tmp_name};
  ::fchmod(out.get(), 0600);

  // cpio | gzip
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return errno_status("pipe");
  UniqueFd pipe_read(pipe_fds[0]), pipe_write(pipe_fds[1]);
  SpawnOptions cpio_opts;
  cpio_opts.argv = {"cpio", "--create", "--format=newc", "--null", "--quiet", "--owner=0:0",
                    "--reproducible"};
  cpio_opts.cwd = root;
  cpio_opts.stdin_fd = list.get();
  cpio_opts.stdout_fd = pipe_write.get();
  cpio_opts.stderr_fd = err.get();
  auto cpio = ChildProcess::spawn(cpio_opts);
  if (!cpio) return cpio.status().with_context("cpio (apt-get install cpio): ");
  SpawnOptions gzip_opts;
  gzip_opts.argv = {"gzip", "-9", "-n"};
  gzip_opts.stdin_fd = pipe_read.get();
  gzip_opts.stdout_fd = out.get();
  gzip_opts.stderr_fd = err.get();
  auto gzip = ChildProcess::spawn(gzip_opts);
  pipe_read.reset();  // only the children may hold the pipe, or gzip never sees EOF
  pipe_write.reset();
  if (!gzip) return gzip.status().with_context("gzip: ");
  const auto cpio_exit = cpio->wait();
  const auto gzip_exit = gzip->wait();
  if (!cpio_exit || !cpio_exit->success()) {
    return error(Errc::io, "cpio failed (" + (cpio_exit ? cpio_exit->describe() : "no status") +
                               "): " + last_line(err_path));
  }
  if (!gzip_exit || !gzip_exit->success()) {
    return error(Errc::io, "gzip failed (" + (gzip_exit ? gzip_exit->describe() : "no status") +
                               "): " + last_line(err_path));
  }

  if (::fsync(out.get()) != 0) return errno_status("fsync " + tmp_name);
  out.reset();
  const auto initrd = key_dir / "initrd.gz";
  if (::rename(tmp_name.c_str(), initrd.c_str()) != 0) {
    return errno_status("rename " + tmp_name + " to " + initrd.string());
  }
  guard.path.clear();
  return fsync_dir(key_dir);
}

}  // namespace fcvm
