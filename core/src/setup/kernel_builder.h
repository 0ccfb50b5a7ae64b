// KernelBuilder: `fcvm setup kernel`, the guest kernel built from Debian's linux-source.
//
// The kernel is `make tinyconfig` + guest/kernel/fcvm-guest.config (compiled into fcvm) +
// `make olddefconfig`, then `make vmlinux bzImage`. Results are cached per input:
//
//   <data_dir>/kernels/<key>/{vmlinux,bzImage,config,source-version,build.log}
//   key = first 16 hex digits of sha256(<linux-source version> "\n" <fragment bytes>)
//
// A build runs in <data_dir>/kernels/.build-<key>-<pid>-XXXXXX/ under an exclusive lock on
// <data_dir>/kernels/.lock and its output directory is renamed into place in one step, so a
// cache directory is complete or absent. A build that crashed leaves only its .build-*
// directory, which the next build removes. A second ensure() with the same inputs is a
// lookup. Every `CONFIG_X=...` and `# CONFIG_X is not set` line of the fragment is checked
// against the final .config (olddefconfig silently drops options whose dependencies fail).
//
// Threading: one KernelBuilder per thread; separate processes are serialized by the lock.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fcvm/log.h"
#include "fcvm/result.h"

namespace fcvm {

// A built guest kernel.
struct KernelPaths {
  std::filesystem::path dir;      // <data_dir>/kernels/<key>
  std::filesystem::path vmlinux;  // ELF with a PVH entry: QEMU `-kernel` and Firecracker
  std::filesystem::path bzimage;  // compressed image, for loaders that need one
  std::filesystem::path config;   // the kernel's final .config
  std::string key;                // the cache key (16 hex digits)
  std::string source_version;     // linux-source package version it was built from
};

struct KernelBuildOptions {
  std::filesystem::path data_dir;
  // Debian package holding the source tarball, and the tarball it installs.
  std::string source_package = "linux-source-6.1";
  std::filesystem::path source_tarball = "/usr/src/linux-source-6.1.tar.xz";
  // The source version for the cache key; empty means ask dpkg about source_package.
  std::string source_version;
  // The config fragment; empty means the one compiled into fcvm.
  std::string fragment;
  // make -j; 0 means one job per CPU this process may run on.
  unsigned jobs = 0;
  // Where progress goes: a TTY gets one updating line; otherwise progress is logged at
  // info level every ~15 s. -1: no progress at all.
  int progress_fd = STDERR_FILENO;
};

class KernelBuilder {
 public:
  KernelBuilder(KernelBuildOptions options, LoggerPtr log);

  // A built kernel for this fragment, or nullopt; never builds. Prefers the one built from
  // the installed source version; else (source upgraded or removed since) the newest one
  // built from this fragment. Runs dpkg-query only when dpkg's database changed since.
  std::optional<KernelPaths> cached() const;

  // The cached kernel, building it first when there is none (about 4 minutes on 2 CPUs).
  // Errors: the source package or build tools missing (Errc::unavailable, naming the
  // apt-get command), too little disk space, a failed build step (naming the log file),
  // or fragment options missing from the final .config (Errc::internal, naming them).
  // The entry is left readable by every user (share_asset): a kernel is not secret, and
  // an unprivileged fcvm may be handed root's.
  Result<KernelPaths> ensure();

  // The cache key for the installed source package and the fragment.
  Result<std::string> cache_key() const;

  // options.source_version, else the installed version of options.source_package;
  // Errc::unavailable (naming the apt-get fix) when it is not installed.
  Result<std::string> source_version() const;

  const std::string& fragment() const { return options_.fragment; }
  std::filesystem::path kernels_dir() const { return options_.data_dir / "kernels"; }

 private:
  Result<KernelPaths> cached_or_built();
  Result<KernelPaths> build(const std::string& key, const std::string& version);
  Status preflight() const;

  KernelBuildOptions options_;
  LoggerPtr log_;
};

// The apt-get line that installs everything a kernel build needs.
inline constexpr std::string_view kKernelBuildDepsFix =
    "apt-get install linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev";


}  // namespace fcvm
