// Guest assets (kernels, initramfs images) are not secret: any local user may boot them.
// fcvm runs with umask 077, so what it creates is private; this makes one cache entry
// readable by all and its parents traversable, while the data dir stays unlistable and
// everything else in it (vms/, snapshots/, images/) stays private to its owner.
#pragma once

#include <filesystem>

#include "fcvm/result.h"

namespace fcvm {

// Gives `entry` (a file or a directory tree below `data_dir`) modes 0644/0755, each
// directory between `data_dir` and `entry` 0755, and `data_dir` itself search permission
// for group and others (0711 on a 0700 dir). Touches only what the caller owns and what
// differs, so it is cheap on a cache hit and leaves another user's files alone; symlinks
// are never followed. Idempotent. Fails with the path that could not be changed.
Status share_asset(const std::filesystem::path& data_dir, const std::filesystem::path& entry);

}  // namespace fcvm
