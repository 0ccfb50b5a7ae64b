// Probes of the host that fcvm would otherwise repeat on every run (`qemu-system-x86_64
// -version`, `dpkg-query` of a package) cost tens to hundreds of milliseconds each. Their
// output depends only on files at known paths (the binary; dpkg's status database), so it
// is kept on disk keyed by each such file's path, size, mtime, ctime, inode and device, and the
// command runs again only when one of those changes.
//
// Threading: thread-safe; concurrent misses may both run the command (the last write
// wins, and both results are equal). Nothing here throws.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

// The stdout of `argv` (run_command), from `cache_dir` when none of `key_files` changed
// since it was stored. A key file that cannot be stat'ed makes the call uncached. Only a
// successful run is stored (a 0600 file, written atomically; `cache_dir` is created 0700
// if missing); failing to store is not an error. Errors: those of run_command.
FCVM_SDK_API Result<std::string> cached_command_output(const std::filesystem::path& cache_dir,
                                                       const std::vector<std::string>& argv,
                                                       const std::vector<std::filesystem::path>& key_files);

}  // namespace fcvm
