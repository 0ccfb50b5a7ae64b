// MemoryBackend: where a restored VM's guest memory comes from.
//
// Implementations: "file" (built into core: the snapshot's memory image mapped MAP_PRIVATE
// by every clone, which share its page cache until they write) and memory-uffd (a page
// server resolving userfaultfd faults, Firecracker's UFFD handshake).
//
// Invariant shared by all: a memory image may have several names (forks hardlink it), and
// none of them is ever written while the inode's link count is above one.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "fcvm/plugin.h"
#include "fcvm/result.h"
#include "fcvm/vmm.h"

namespace fcvm {

// Serves one snapshot's memory to any number of restored VMs. Owned by the
// `fcvm snapshot serve` process; destroying it stops serving (the VMs it served then hang
// on their next fault, so the owner stops them first). Threading: one thread, the owner's
// event loop.
class FCVM_SDK_API MemoryServer {
 public:
  virtual ~MemoryServer() = default;

  // An fd for the owner's epoll (EPOLLIN), or -1 when the server needs no events.
  virtual int fd() const = 0;
  // Handles whatever is ready on fd(): new VMs, faults, events. Never blocks for long.
  // An error concerns one client, which is dropped; the server keeps serving.
  virtual Status dispatch() = 0;
  // PIDs of the VMMs currently served.
  virtual std::vector<pid_t> clients() const = 0;
};

class FCVM_SDK_API MemoryBackend : public Backend {
 public:
  PluginKind kind() const final { return PluginKind::memory; }

  // How a VM restored from `snapshot` into `clone_dir` gets its memory: the image path
  // (file) or the serving socket (uffd). Creates nothing that outlives clone_dir.
  virtual Result<MemorySource> source_for_clone(const SnapshotFiles& snapshot,
                                                const std::filesystem::path& clone_dir) = 0;

  // Starts serving `memory_image` on the unix socket `socket`.
  virtual Result<std::unique_ptr<MemoryServer>> serve(const std::filesystem::path& memory_image,
                                                      const std::filesystem::path& socket) = 0;

  // Gives a fork its own name for a snapshot's memory image: a hardlink at `dest`, so all
  // forks share one inode and one page cache. Fails if `dest` exists.
  virtual Status place(const std::filesystem::path& memory_image,
                       const std::filesystem::path& dest) = 0;
};

// The nlink guard: before anything writes `mem_file`, make it the only name of its inode
// by replacing it with a private copy (reflink where the filesystem can, else a sparse
// copy). A no-op when nlink is already 1.
FCVM_SDK_API Status make_private_before_write(const std::filesystem::path& mem_file);

}  // namespace fcvm
