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

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "fcvm/plugin.h"
#include "fcvm/result.h"
#include "fcvm/vmm.h"

namespace fcvm {

// What a memory backend needs from the snapshot commands, so they check a combination and
// decide whether to run a serve process before creating anything.
struct MemoryCapabilities {
  // The VMMs cannot map the image themselves: `snapshot serve` must run a MemoryServer
  // for as long as any clone runs. When false, serve() returns no server.
  bool needs_server = false;
  // The VMM must restore with this kind of memory source (VmmCapabilities must match:
  // restore_file_memory / restore_uffd_memory).
  MemorySourceKind source_kind = MemorySourceKind::file;
  // MemoryServer::adopt works: a restarted server takes over the running clones of a dead one.
  bool adopts_clients = false;
  // MemoryServeOptions::prefetch has an effect.
  bool prefetch = false;
};

// One served VMM's counters. Latency is the server's time from reading a fault to the
// ioctl that resolved it (the guest's wait includes the kernel's wake-up on top of it).
struct MemoryClientStats {
  // Bucket i counts resolutions that took [2^i, 2^(i+1)) microseconds; bucket 0 also holds
  // those under 1 us, the last bucket everything above.
  static constexpr std::size_t kLatencyBuckets = 16;

  pid_t pid = 0;
  bool connected = false;        // false once the VMM exited or was dropped
  bool adopted = false;          // taken over from a dead server, not by handshake
  std::uint64_t faults = 0;      // page-fault events handled
  std::uint64_t pages_copied = 0;     // pages filled from the image (faults and prefetch)
  std::uint64_t bytes_copied = 0;
  std::uint64_t zero_pages = 0;       // pages filled with zeros (removed ranges)
  std::uint64_t prefetched_pages = 0; // of pages_copied, pushed before any fault asked
  std::uint64_t remove_events = 0;
  std::uint64_t eagain_retries = 0;   // copies retried because a remove was queued
  std::array<std::uint64_t, kLatencyBuckets> latency_us_log2{};

  nlohmann::json to_json() const {
    return {{"pid", pid},
            {"connected", connected},
            {"adopted", adopted},
            {"faults", faults},
            {"pages_copied", pages_copied},
            {"bytes_copied", bytes_copied},
            {"zero_pages", zero_pages},
            {"prefetched_pages", prefetched_pages},
            {"remove_events", remove_events},
            {"eagain_retries", eagain_retries},
            {"latency_us_log2", latency_us_log2}};
  }
};

// How a server serves one snapshot's memory.
struct MemoryServeOptions {
  std::filesystem::path memory_image;  // the snapshot's memory file, only ever read
  std::filesystem::path socket;        // unix socket the VMMs connect to (created, 0600)
  // The serve process's own directory (0700): per-client records a restarted server reads.
  std::filesystem::path state_dir;
  // Where the working-set record lives (the snapshot's directory); empty: no prefetch.
  std::filesystem::path snapshot_dir;
  bool prefetch = true;
  // Test harnesses only: accept any peer instead of the PIDs given to expect_client().
  bool accept_any_client = false;
  // A connection whose handshake has not arrived by then is dropped.
  std::chrono::milliseconds handshake_timeout{3000};
  // SIGKILL every served VMM when the server is destroyed: a VMM whose server is gone hangs
  // at its next fault and ignores SIGTERM. Off only for a deliberate hand-over (restart).
  bool kill_clients_on_exit = true;
  // Bytes resolved per fault, aligned and clipped to the region (a power of two, at least
  // one page); pages already present are skipped. 0: the backend's default.
  std::size_t fault_chunk_bytes = 0;
};

// Serves one snapshot's memory to any number of restored VMs. Owned by the
// `fcvm snapshot serve` process. Threading: one thread, the owner's event loop; no method
// blocks for long. Destroying it closes the socket and, with kill_clients_on_exit, kills
// the VMMs it served.
class FCVM_SDK_API MemoryServer {
 public:
  virtual ~MemoryServer() = default;

  // An fd for the owner's epoll (EPOLLIN): readable whenever dispatch() has work.
  virtual int fd() const = 0;
  // Handles whatever is ready: new VMs, handshakes, faults, events, timeouts, prefetch.
  // An error concerns one client, which is dropped with a log line; the server keeps
  // serving the others, and dispatch() still returns ok. A non-ok Status means the server
  // itself is broken (its epoll failed).
  virtual Status dispatch() = 0;
  // Accept a handshake from VMM process `pid` (SO_PEERCRED). A connection of that pid that
  // arrived first waits unread until this call or its handshake timeout. Idempotent; the
  // allowance ends when that client leaves.
  virtual void expect_client(pid_t pid) = 0;
  // Takes over VMM `pid` served by a dead server of the same snapshot, from the record in
  // state_dir: fetches its uffd with pidfd_getfd and serves it. not_found without a record
  // or when the process is gone (the record is removed); unavailable without the privilege
  // to fetch another process's fd.
  virtual Status adopt(pid_t pid) = 0;
  // PIDs recorded in state_dir (clients of this or a previous server), alive or not.
  virtual std::vector<pid_t> recorded_clients() const = 0;
  // PIDs of the VMMs currently served.
  virtual std::vector<pid_t> clients() const = 0;
  // Counters of the clients this server has served, connected ones first (a server may
  // keep only the most recent of those that left).
  virtual std::vector<MemoryClientStats> stats() const = 0;
};

// Threading: every method may be called from any thread, one call at a time per backend;
// none throws (failures are Status values); none blocks beyond the file operations it names.
// Checked for every memory backend by tests/contract/memory_contract_test.cc.
class FCVM_SDK_API MemoryBackend : public Backend {
 public:
  PluginKind kind() const final { return PluginKind::memory; }

  // Fixed for the backend's life; never fails.
  virtual MemoryCapabilities capabilities() const = 0;

  // How a VM restored from `snapshot` into `clone_dir` gets its memory: the image path
  // (file) or the serving socket (uffd); its kind is capabilities().source_kind. Creates
  // nothing that outlives clone_dir. Idempotent.
  virtual Result<MemorySource> source_for_clone(const SnapshotFiles& snapshot,
                                                const std::filesystem::path& clone_dir) = 0;

  // Starts serving. A null server (ok Result) when !capabilities().needs_server: the VMMs
  // map the image themselves. not_found when the image is missing; an error when the socket
  // cannot be created; leaves nothing behind on failure (no socket, nothing in state_dir).
  // The socket (0600) lives as long as the server: destroying it removes the socket.
  virtual Result<std::unique_ptr<MemoryServer>> serve(const MemoryServeOptions& options) = 0;

  // Gives a fork its own name for a snapshot's memory image: a hardlink at `dest`, so all
  // forks share one inode and one page cache (a copy where no hardlink can be made, e.g.
  // across filesystems). already_exists if `dest` exists; on failure `dest` does not exist.
  // Never writes the image.
  virtual Status place(const std::filesystem::path& memory_image,
                       const std::filesystem::path& dest) = 0;
};

// The nlink guard: before anything writes `mem_file`, make it the only name of its inode
// by replacing it with a private copy (reflink where the filesystem can, else a sparse
// copy). A no-op when nlink is already 1.
FCVM_SDK_API Status make_private_before_write(const std::filesystem::path& mem_file);

}  // namespace fcvm
