// Copying disk and memory images: reflink when the filesystem can share extents, else a
// sparse copy.
#pragma once

#include <filesystem>
#include <string>

#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

enum class CloneMode {
  create_new,  // `to` must not exist (already_exists otherwise, also if it appears meanwhile)
  replace,     // `to` is replaced atomically; `from` and `to` may be the same file
};

// Copies the regular file `from` to `to`. Tries FICLONE first (btrfs, xfs: instant, shares
// extents); elsewhere copy_data_extents, so holes stay holes. The copy is written under a temp name beside `to`, fsynced and then linked or
// renamed into place, so `to` appears complete or not at all; on failure nothing is left.
// `from` must not change meanwhile. Sets `reflinked` to whether extents were shared.
FCVM_SDK_API Status clone_file(const std::filesystem::path& from, const std::filesystem::path& to,
                               CloneMode mode = CloneMode::create_new, bool* reflinked = nullptr);

// Makes the regular file `out` a copy of `in`: sets its size, then copies only the data
// extents (SEEK_DATA/SEEK_HOLE; the whole file where the filesystem cannot tell), so holes
// stay holes. Reads and writes go through io_uring in batches (pread/pwrite where io_uring
// is unavailable). `what` names the copy in errors. On failure `out` holds a partial copy:
// the caller discards it. Not thread-safe on the same fds.
FCVM_SDK_API Status copy_data_extents(int in, int out, const std::string& what);

}  // namespace fcvm
