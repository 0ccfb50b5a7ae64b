// UffdMemory: the memory-uffd backend. Clones' VMMs get their guest memory from a page
// server (UffdPageServer) run by `fcvm snapshot serve`, over Firecracker's UFFD handshake.
#pragma once

#include "fcvm/memory.h"

namespace fcvm::uffd {

inline constexpr const char* kPluginName = "memory-uffd";

class UffdMemory final : public MemoryBackend {
 public:
  explicit UffdMemory(LoggerPtr log) : log_(std::move(log)) {}

  // Available when this process can create a userfaultfd: /dev/userfaultfd opens read-write
  // or vm.unprivileged_userfaultfd is 1 (or we are root); the reason names the fix.
  Probe probe() override;

  // needs_server, source kind uffd, adopts clients, prefetch.
  MemoryCapabilities capabilities() const override;

  // {uffd, <snapshot dir>/memory-uffd.sock}: every clone of a snapshot connects to the
  // one server of that snapshot.
  Result<MemorySource> source_for_clone(const SnapshotFiles& snapshot,
                                        const std::filesystem::path& clone_dir) override;

  // A UffdPageServer (uffd_page_server.h).
  Result<std::unique_ptr<MemoryServer>> serve(const MemoryServeOptions& options) override;

  // Hardlinks the image at `dest` (already_exists when `dest` exists).
  Status place(const std::filesystem::path& memory_image,
               const std::filesystem::path& dest) override;

  static std::filesystem::path socket_for(const SnapshotFiles& snapshot);

 private:
  LoggerPtr log_;
};

}  // namespace fcvm::uffd
