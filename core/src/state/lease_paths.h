// Checking a disk lease read from a record or manifest before a storage plugin deletes
// what it names.
#pragma once

#include <filesystem>

#include "fcvm/result.h"
#include "fcvm/storage.h"

namespace fcvm {

// ok when every drive of `lease` is an absolute path beneath `own_dir` (the VM's or the
// snapshot's directory) or, read-only, beneath the plugin's own dir <data_dir>/<plugin>
// (a shared base), with no symlink or ".." on the way; a drive whose directory is already
// gone is fine (nothing to delete). Errc::invalid_argument naming the drive otherwise, or
// io when a directory on the way cannot be opened. Plugins decide by drive id, not by
// `read_only`, what they delete, so the flag alone never widens what may be named.
Status check_lease_paths(const std::filesystem::path& data_dir, const std::filesystem::path& own_dir,
                         const DiskLease& lease);

}  // namespace fcvm
