#include "fcvm/path_beneath.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

namespace fcvm {
namespace {

namespace fs = std::filesystem;

// errno read before anything else can change it.
Status os_error(const char* what, const fs::path& path) {
  const int err = errno;
  return errno_status(std::string(what) + " " + path.string(), err);
}

constexpr std::uint64_t kResolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

int openat2_beneath(int dir_fd, const fs::path& rel, int flags, mode_t mode, std::uint64_t more_resolve = 0) {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = kResolve | more_resolve;
  for (;;) {
    const long fd = ::syscall(SYS_openat2, dir_fd, rel.c_str(), &how, sizeof how);
    if (fd >= 0 || errno != EAGAIN) return static_cast<int>(fd);  // EAGAIN: a rename raced; retry
  }
}

// A subdirectory `name` of `dir_fd` to empty, on the same mount: RESOLVE_NO_XDEV refuses
// any mount point, a bind mount of the same file system (same st_dev) included.
Result<UniqueFd> open_subdir(int dir_fd, const std::string& name, const fs::path& shown) {
  UniqueFd fd(openat2_beneath(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, RESOLVE_NO_XDEV));
  if (fd) return fd;
  const int err = errno;
  if (err == EXDEV) return error(Errc::io, shown.string() + " is a mount point; unmount it, then try again");
  return Status(err == ENOENT ? Errc::not_found : Errc::io, errno_status("open " + shown.string(), err).message());
}

Result<UniqueFd> open_root(const fs::path& root) {
  UniqueFd fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    return Status(err == ENOENT ? Errc::not_found : Errc::io, errno_status("open " + root.string(), err).message());
  }
  return fd;
}

// The parent of `path` (opened beneath root) and its last component.
struct Parent {
  UniqueFd fd;
  std::string name;
};
Result<Parent> open_parent(const fs::path& root, const fs::path& path) {
  auto rel = relative_beneath(root, path);
  if (!rel) return rel.status();
  auto root_fd = open_root(root);
  if (!root_fd) return root_fd.status();
  Parent p;
  p.name = rel->filename().string();
  const fs::path dir = rel->parent_path();
  if (dir.empty()) {
    p.fd = std::move(*root_fd);
    return p;
  }
  p.fd.reset(openat2_beneath(root_fd->get(), dir, O_PATH | O_DIRECTORY, 0));
  if (!p.fd) {
    const int err = errno;
    if (err == ELOOP || err == EXDEV) {
      return error(Errc::invalid_argument, (root / dir).string() + " leaves " + root.string() +
                                               " through a symlink or \"..\"; refusing to act on " +
                                               path.string());
    }
    return Status(err == ENOENT ? Errc::not_found : Errc::io,
                  errno_status("open " + (root / dir).string(), err).message());
  }
  return p;
}

// Empties the directory `fd`; `shown` names it in errors.
Status empty_dir(int fd, const fs::path& shown) {
  const int list_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (list_fd < 0) return os_error("dup", shown);
  DIR* dir = ::fdopendir(list_fd);
  if (dir == nullptr) {
    const int err = errno;
    ::close(list_fd);
    return errno_status("list " + shown.string(), err);
  }
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = ::readdir(dir)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  const int read_err = errno;
  ::closedir(dir);
  if (read_err != 0) return errno_status("list " + shown.string(), read_err);
  for (const auto& n : names) {
    struct stat st {};
    if (::fstatat(fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return os_error("stat", shown / n);
    }
    if (S_ISDIR(st.st_mode)) {
      auto sub = open_subdir(fd, n, shown / n);
      if (!sub) {
        if (sub.status().code() == Errc::not_found) continue;
        return sub.status();
      }
      FCVM_RETURN_IF_ERROR(empty_dir(sub->get(), shown / n));
    }
    if (::unlinkat(fd, n.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0 && errno != ENOENT) {
      return os_error("remove", shown / n);
    }
  }
  return ok_status();
}

}  // namespace

Result<fs::path> relative_beneath(const fs::path& root, const fs::path& path) {
  const fs::path norm_root = root.lexically_normal();
  fs::path rel = path.is_absolute() ? path.lexically_normal().lexically_relative(norm_root)
                                    : path.lexically_normal();
  if (!rel.empty() && rel.filename().empty()) rel = rel.parent_path();  // "a/b/" -> "a/b"
  if (rel.empty() || rel == "." || *rel.begin() == ".." || rel.is_absolute()) {
    return error(Errc::invalid_argument,
                 path.string() + " is not beneath " + root.string() + "; refusing to act on it");
  }
  return rel;
}

Result<UniqueFd> open_beneath(const fs::path& root, const fs::path& path, int flags, mode_t mode) {
  auto rel = relative_beneath(root, path);
  if (!rel) return rel.status();
  auto root_fd = open_root(root);
  if (!root_fd) return root_fd.status();
  UniqueFd fd(openat2_beneath(root_fd->get(), *rel, flags, mode));
  if (!fd) {
    const int err = errno;
    if (err == ELOOP || err == EXDEV) {
      return error(Errc::invalid_argument, path.string() + " leaves " + root.string() +
                                               " through a symlink or \"..\"; refusing to open it");
    }
    return Status(err == ENOENT ? Errc::not_found : Errc::io, errno_status("open " + path.string(), err).message());
  }
  return fd;
}

Status remove_beneath(const fs::path& root, const fs::path& path) {
  auto parent = open_parent(root, path);
  if (!parent) return parent.status().code() == Errc::not_found ? ok_status() : parent.status();
  if (::unlinkat(parent->fd.get(), parent->name.c_str(), 0) == 0 || errno == ENOENT) return ok_status();
  if (errno != EISDIR) return os_error("remove", path);
  if (::unlinkat(parent->fd.get(), parent->name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT) {
    return ok_status();
  }
  return os_error("remove", path);
}

Status remove_all_beneath(const fs::path& root, const fs::path& path) {
  auto parent = open_parent(root, path);
  if (!parent) return parent.status().code() == Errc::not_found ? ok_status() : parent.status();
  struct stat st {};
  if (::fstatat(parent->fd.get(), parent->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? ok_status() : os_error("stat", path);
  }
  if (S_ISDIR(st.st_mode)) {
    auto dir = open_subdir(parent->fd.get(), parent->name, path);
    if (!dir) return dir.status().code() == Errc::not_found ? ok_status() : dir.status();
    FCVM_RETURN_IF_ERROR(empty_dir(dir->get(), path));
  }
  if (::unlinkat(parent->fd.get(), parent->name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0 &&
      errno != ENOENT) {
    return os_error("remove", path);
  }
  return ok_status();
}

}  // namespace fcvm
