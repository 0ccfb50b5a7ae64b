// InitramfsBuilder: `fcvm setup initramfs`, the archive every guest boots with fc-agent as
// its /init.
//
//   <data_dir>/initramfs/<key>/initrd.gz       gzip'ed cpio (newc), owned by 0:0
//   key = first 16 hex digits of sha256(layout version, fc-agent's bytes, any extras)
//
// The archive holds /init (fc-agent), the mount points the agent uses (dev proc sys run tmp
// etc root) and /dev/console when this process may create device nodes (the agent opens
// the console itself when the node is missing). The archive is built with the cpio and
// gzip tools in a staging directory under <data_dir>/initramfs, under an exclusive lock on
// <data_dir>/initramfs/.lock, and published with a temp file + fsync + rename, so initrd.gz
// is complete or absent. When initrd.gz exists, ensure() only hashes the agent.
//
// Threading: the object is immutable; calls from several threads or processes are safe.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "fcvm/log.h"
#include "fcvm/result.h"

namespace fcvm {

// A host file copied into the archive (tests add busybox this way).
struct InitramfsFile {
  std::filesystem::path source;
  std::string path;    // inside the archive, relative: "bin/busybox"
  mode_t mode = 0755;  // permission bits in the archive
};

// A symbolic link in the archive: "bin/sh" -> "busybox".
struct InitramfsSymlink {
  std::string path;
  std::string target;
};

struct InitramfsContents {
  std::filesystem::path agent_binary;  // becomes /init
  std::vector<InitramfsFile> extra_files;
  std::vector<InitramfsSymlink> symlinks;
};

class InitramfsBuilder {
 public:
  InitramfsBuilder(std::filesystem::path data_dir, LoggerPtr log);

  // The initrd.gz for this agent binary, built first when missing. Errors: the agent is
  // missing (Errc::not_found, saying how to get it), cpio or gzip missing or failing
  // (naming the tool and its last stderr line), or the data dir not writable (Errc::io).
  // The image is left readable by every user (share_asset): it holds nothing secret.
  Result<std::filesystem::path> ensure(const std::filesystem::path& agent_binary) const;
  Result<std::filesystem::path> ensure(const InitramfsContents& contents) const;

  // The cache key of `contents` (16 hex digits); reads every file it names.
  Result<std::string> cache_key(const InitramfsContents& contents) const;

  std::filesystem::path initramfs_dir() const { return data_dir_ / "initramfs"; }

 private:
  Status build(const InitramfsContents& contents, const std::filesystem::path& key_dir) const;
  Result<std::filesystem::path> shared(const std::filesystem::path& initrd) const;

  std::filesystem::path data_dir_;
  LoggerPtr log_;
};

}  // namespace fcvm
