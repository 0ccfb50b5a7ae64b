#include "uffd_memory.h"

#include "fcvm/memory_image.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>

#include "fcvm/unique_fd.h"
#include "uffd_page_server.h"

namespace fcvm::uffd {

Probe UffdMemory::probe() {
  if (UniqueFd(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC))) {
    return Probe::yes("userfaultfd from /dev/userfaultfd");
  }
  if (::geteuid() == 0) return Probe::yes("userfaultfd syscall as root");
  std::ifstream sysctl("/proc/sys/vm/unprivileged_userfaultfd");
  int unprivileged = 0;
  if (sysctl >> unprivileged && unprivileged == 1) return Probe::yes("vm.unprivileged_userfaultfd=1");
  return Probe::no(
      "memory-uffd: this user cannot create a userfaultfd; give it read-write access to "
      "/dev/userfaultfd (e.g. a udev rule or setfacl) or set vm.unprivileged_userfaultfd=1");
}

MemoryCapabilities UffdMemory::capabilities() const {
  MemoryCapabilities caps;
  caps.needs_server = true;
  caps.source_kind = MemorySourceKind::uffd;
  caps.adopts_clients = true;
  caps.prefetch = true;
  return caps;
}

std::filesystem::path UffdMemory::socket_for(const SnapshotFiles& snapshot) {
  return snapshot.memory.parent_path() / "memory-uffd.sock";
}

Result<MemorySource> UffdMemory::source_for_clone(const SnapshotFiles& snapshot,
                                                  const std::filesystem::path&) {
  return MemorySource{MemorySourceKind::uffd, socket_for(snapshot)};
}

Result<std::unique_ptr<MemoryServer>> UffdMemory::serve(const MemoryServeOptions& options) {
  auto server = UffdPageServer::start(options, log_);
  if (!server) return server.status();
  return std::unique_ptr<MemoryServer>(std::move(*server));
}

Status UffdMemory::place(const std::filesystem::path& memory_image, const std::filesystem::path& dest) {
  // A hardlink, or a copy across filesystems: the server reads the image, never writes it.
  auto placed = place_memory_image(memory_image, dest);
  if (!placed) return placed.status().with_context("memory-uffd: ");
  return ok_status();
}

}  // namespace fcvm::uffd
