#include "setup/shared_asset.h"

#include <sys/stat.h>
#include <unistd.h>

#include <system_error>

namespace fcvm {
namespace {

namespace fs = std::filesystem;

// Sets `path`'s permission bits to `mode(current)` when we own it and they differ.
template <class ModeFor>
Status adjust(const fs::path& path, ModeFor mode_for) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno_status("stat " + path.string());
  if (S_ISLNK(st.st_mode) || st.st_uid != ::geteuid()) return ok_status();
  const mode_t want = mode_for(st.st_mode);
  if ((st.st_mode & 07777) == want) return ok_status();
  if (::chmod(path.c_str(), want) != 0) return errno_status("chmod " + path.string());
  return ok_status();
}

mode_t public_mode(mode_t current) {
  if (S_ISDIR(current)) return 0755;
  return (current & S_IXUSR) ? 0755 : 0644;
}

}  // namespace

Status share_asset(const fs::path& data_dir, const fs::path& entry) {
  const fs::path root = data_dir.lexically_normal();
  const fs::path rel = entry.lexically_normal().lexically_relative(root);
  if (rel.empty() || rel == "." || *rel.begin() == "..") {
    return error(Errc::invalid_argument, entry.string() + " is not below the data dir " + root.string());
  }
  FCVM_RETURN_IF_ERROR(adjust(root, [](mode_t m) { return static_cast<mode_t>((m & 07777) | 0011); }));
  fs::path at = root;
  for (const auto& part : rel) {
    at /= part;
    FCVM_RETURN_IF_ERROR(adjust(at, public_mode));
  }
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(at, ec))) return ok_status();
  for (auto it = fs::recursive_directory_iterator(at, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    FCVM_RETURN_IF_ERROR(adjust(it->path(), public_mode));
  }
  if (ec) return error(Errc::io, "list " + at.string() + ": " + ec.message());
  return ok_status();
}

}  // namespace fcvm
