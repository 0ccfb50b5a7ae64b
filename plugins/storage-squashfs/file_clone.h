// Copying disk images: reflink when the filesystem can share extents, else sparse.
#pragma once

#include <filesystem>

#include "fcvm/result.h"

namespace fcvm::squashfs {

// Copies the regular file `from` to `to`, which must not exist (already_exists otherwise).
// Tries FICLONE first (btrfs, xfs: instant, shares extents); elsewhere copies only the
// data extents (SEEK_DATA/SEEK_HOLE), so holes stay holes. The copy is written under a
// temp name, fsynced and renamed, so `to` appears complete or not at all; on failure
// nothing is left. Sets `reflinked` to whether extents were shared.
Status clone_file(const std::filesystem::path& from, const std::filesystem::path& to,
                  bool* reflinked = nullptr);

}  // namespace fcvm::squashfs
