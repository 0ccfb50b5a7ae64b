// Placing a snapshot's memory image for a fork, shared by every memory backend.
//
// Forks of one snapshot hardlink its memory image: one inode, one page cache, nothing
// copied. The other half of the rule, make_private_before_write (memory.h), keeps any
// writer off an inode with more than one name.
#pragma once

#include <filesystem>

#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

enum class MemoryPlacement {
  hardlink,  // `dest` is another name of the image's inode
  reflink,   // `dest` shares the image's extents (btrfs, xfs)
  copy,      // `dest` is a sparse copy
};

FCVM_SDK_API const char* to_string(MemoryPlacement placement) noexcept;

// Gives `dest` the contents of `image`: a hardlink; where the filesystem refuses one
// (EXDEV: another filesystem, EMLINK: too many links, EPERM: e.g. protected_hardlinks)
// a reflink, else a sparse copy (clone_file). The caller warns when the result is not a
// hardlink: forks then no longer share a page cache. already_exists when `dest` exists;
// on failure `dest` does not exist. Thread-safe.
FCVM_SDK_API Result<MemoryPlacement> place_memory_image(const std::filesystem::path& image,
                                                        const std::filesystem::path& dest);

}  // namespace fcvm
