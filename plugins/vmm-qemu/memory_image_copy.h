// Copies a guest-memory file into a snapshot's memory image.
#pragma once

#include <filesystem>

#include "fcvm/result.h"

namespace fcvm::qemu {

// Makes `to` a private copy of `from`: a reflink (FICLONE) where the file system shares
// extents, else a sparse copy that skips holes (SEEK_DATA/SEEK_HOLE) so untouched guest
// pages cost nothing. Writes a temp file beside `to`, fsyncs and renames it, so `to` is
// whole or absent. `from` must not change meanwhile (the VM is paused).
Status copy_memory_image(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace fcvm::qemu
