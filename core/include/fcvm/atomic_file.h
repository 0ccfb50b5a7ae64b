// Crash-safe file writes: readers see the old content or the new, never a torn mix.
#pragma once

#include <filesystem>
#include <string_view>

#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

// Writes `data` to a temp file beside `path`, fsyncs it, renames it over `path` and fsyncs
// the directory. On failure the temp file is removed and `path` is untouched.
FCVM_SDK_API Status write_file_atomic(const std::filesystem::path& path, std::string_view data,
                                      unsigned mode = 0600);

// Reads a whole file.
FCVM_SDK_API Result<std::string> read_file(const std::filesystem::path& path);

// fsyncs a directory (after a rename into it).
FCVM_SDK_API Status fsync_dir(const std::filesystem::path& dir);

}  // namespace fcvm
