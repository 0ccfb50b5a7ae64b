// Whether a data dir may be acted on destructively by this process.
//
// Records, manifests and leases in a data dir name files that fcvm then deletes. If
// someone else can write the data dir, they choose those names, and a privileged `fcvm
// gc` deletes what they chose. So destructive commands (rm, gc, snapshot rm, snapshot
// serve, image rm) run only in a data dir the caller controls: the dir and each of the
// subdirectories holding records and VM files (state/, vms/, snapshots/, images/) are
// owned by the effective uid, not symlinks, and writable by nobody else. Paths read from
// them are still resolved beneath the data dir (fcvm/path_beneath.h); this check keeps
// anyone else from planting them in the first place.
#pragma once

#include <filesystem>

#include "fcvm/result.h"

namespace fcvm {

// ok when the caller controls `data_dir` (a missing subdirectory is fine; a missing data
// dir too: there is nothing to act on). Errc::unavailable otherwise, one line naming the
// directory, its owner or mode, and the fix.
Status check_trusted_data_dir(const std::filesystem::path& data_dir);

}  // namespace fcvm
