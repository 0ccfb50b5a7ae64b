#include "state/lease_paths.h"

#include <fcntl.h>

#include "fcvm/path_beneath.h"

namespace fcvm {

Status check_lease_paths(const std::filesystem::path& data_dir, const std::filesystem::path& own_dir,
                         const DiskLease& lease) {
  if (own_dir.empty() || !own_dir.is_absolute()) {
    return error(Errc::invalid_argument, "the lease's owner has no directory of its own");
  }
  // A plugin's name is one path component (the loader refuses any other).
  const bool named = !lease.plugin.empty() && lease.plugin != "." && lease.plugin != ".." &&
                     lease.plugin.find('/') == std::string::npos;
  for (const Drive& d : lease.drives) {
    if (!d.path.is_absolute()) return error(Errc::invalid_argument, "drive " + d.id + ": " + d.path.string() + " is not absolute");
    const bool shared_base = d.read_only && named && relative_beneath(data_dir / lease.plugin, d.path).ok();
    const auto root = shared_base ? data_dir / lease.plugin : own_dir;
    auto rel = relative_beneath(root, d.path);
    if (!rel) return rel.status().with_context("drive " + d.id + ": ");
    if (rel->has_parent_path()) {
      auto dir = open_beneath(root, rel->parent_path(), O_PATH | O_DIRECTORY);
      if (!dir && dir.status().code() != Errc::not_found) return dir.status().with_context("drive " + d.id + ": ");
    }
  }
  return ok_status();
}

}  // namespace fcvm
