// FileMemory: the built-in "file" memory backend.
//
// A restored VM maps its snapshot's memory image MAP_PRIVATE, so every clone of a snapshot
// shares the image's page cache until it writes a page. There is nothing to serve: each VMM
// maps the file itself. Forks get their own name for the image as a hardlink, never a copy.
#pragma once

#include "fcvm/memory.h"

namespace fcvm {

class FileMemory final : public MemoryBackend {
 public:
  // `log` receives the warning when place() cannot hardlink.
  explicit FileMemory(LoggerPtr log = null_logger()) : log_(log ? std::move(log) : null_logger()) {}

  // Needs nothing from the host: always available.
  Probe probe() override;

  // {file, snapshot.memory}: the clone maps the snapshot's image directly.
  Result<MemorySource> source_for_clone(const SnapshotFiles& snapshot,
                                        const std::filesystem::path& clone_dir) override;

  // needs_server false, source kind file.
  MemoryCapabilities capabilities() const override;

  // No server (a null pointer): the VMMs map the image themselves. Fails (not_found) when
  // the image does not exist. The socket is not created.
  Result<std::unique_ptr<MemoryServer>> serve(const MemoryServeOptions& options) override;

  // place_memory_image: a hardlink, else (EXDEV, EMLINK, EPERM) a reflink or sparse copy
  // with a warning. already_exists when `dest` exists.
  Status place(const std::filesystem::path& memory_image,
               const std::filesystem::path& dest) override;

 private:
  LoggerPtr log_;
};

// The descriptor core registers with PluginRegistry::add_builtin, name "file".
const PluginDescriptor& file_memory_descriptor();

}  // namespace fcvm
