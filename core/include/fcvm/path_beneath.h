// Acting on paths read from disk (state records, snapshot manifests, leases): data, not
// trust. Each function here takes a trusted `root` (the data dir, or a plugin's own dir)
// and a path that must lie beneath it, and resolves that path from an fd of `root` with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): no "..", no
// symlink in any component, no /proc magic link can lead outside. A path that is not
// beneath `root` fails with Errc::invalid_argument naming both, before anything is done.
//
// `path` may be absolute (then it must start with `root`, compared after lexical
// normalisation) or relative to `root`. `root` itself is opened as given (it is trusted).
// Threading: none shared; every call opens its own fds. Nothing here throws.
#pragma once

#include <sys/types.h>

#include <filesystem>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "fcvm/visibility.h"

namespace fcvm {

// `path` relative to `root`, or invalid_argument when it is `root` itself or lies outside.
// Lexical only; the functions below also resolve it.
FCVM_SDK_API Result<std::filesystem::path> relative_beneath(const std::filesystem::path& root,
                                                            const std::filesystem::path& path);

// openat2 of `path` beneath `root` with `flags` (O_CLOEXEC is added) and `mode` for
// O_CREAT. A symlink as the last component fails too (ELOOP), so O_CREAT never writes
// through one. Errors: invalid_argument (outside, or through a symlink), not_found (a
// component is missing), io with the errno otherwise.
FCVM_SDK_API Result<UniqueFd> open_beneath(const std::filesystem::path& root,
                                           const std::filesystem::path& path, int flags,
                                           mode_t mode = 0);

// Removes the file, symlink or empty directory at `path`; a symlink is removed itself,
// never followed. Idempotent: a path (or a parent) already gone is success.
FCVM_SDK_API Status remove_beneath(const std::filesystem::path& root, const std::filesystem::path& path);

// Removes `path` and, when it is a directory, everything in it, walking by fd so that a
// component swapped for a symlink mid-walk cannot redirect it. It does not cross any mount
// point (bind mounts of the same file system included): one below `path` fails the call
// (io, naming it) and what is on it is left alone. Idempotent: already gone is success.
FCVM_SDK_API Status remove_all_beneath(const std::filesystem::path& root,
                                       const std::filesystem::path& path);

}  // namespace fcvm
