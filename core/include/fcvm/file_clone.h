// Copying disk and memory images: reflink when the filesystem can share extents, else a
// sparse copy.
#pragma once

#include <filesystem>

#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

enum class CloneMode {
  create_new,  // `to` must not exist (already_exists otherwise, also if it appears meanwhile)
  replace,     // `to` is replaced atomically; `from` and `to` may be the same file
};

// Copies the regular file `from` to `to`. Tries FICLONE first (btrfs, xfs: instant, shares
// extents); elsewhere copies only the data extents (SEEK_DATA/SEEK_HOLE), so holes stay
// holes. The copy is written under a temp name beside `to`, fsynced and then linked or
// renamed into place, so `to` appears complete or not at all; on failure nothing is left.
// `from` must not change meanwhile. Sets `reflinked` to whether extents were shared.
FCVM_SDK_API Status clone_file(const std::filesystem::path& from, const std::filesystem::path& to,
                               CloneMode mode = CloneMode::create_new, bool* reflinked = nullptr);

}  // namespace fcvm
