// VmmBackend: starts, pauses, snapshots, restores and stops virtual machines.
//
// Implementations: vmm-qemu (QEMU microvm over QMP), vmm-firecracker (Firecracker's HTTP
// API). A VmmBackend object is a factory of Vm handles; each Vm owns one VMM process.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fcvm/child_process.h"
#include "fcvm/plugin.h"
#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm {

// How the host reaches the guest agent. Either way the connected socket carries the agent
// protocol (agent/protocol/fcvm/agent_protocol.h); only the way there differs.
//   virtio_serial: a virtio-serial port the guest finds by name; the VMM exposes it on the
//                  host as a unix socket (vmm-qemu).
//   vsock:         the agent listens on AF_VSOCK port kAgentVsockPort; the host connects
//                  through the VMM's vsock unix socket (Firecracker: "CONNECT 1024").
enum class AgentTransport { virtio_serial, vsock };

// The guest agent's AF_VSOCK port (the agent's own name for it is agent::kVsockPort; core
// checks at compile time that the two agree).
inline constexpr std::uint32_t kAgentVsockPort = 1024;

// What a VMM backend can do, so core refuses an impossible combination before it creates
// anything (check_capabilities in core/src/plugin/capability_check.h).
struct VmmCapabilities {
  bool snapshot = false;             // Vm::snapshot works on a booted VM
  bool restore_file_memory = false;  // restore with MemorySourceKind::file
  bool restore_uffd_memory = false;  // restore with MemorySourceKind::uffd
  bool dirty_page_tracking = false;  // diff snapshots
  bool mmds = false;                 // VmSpec::mmds is served to the guest
  AgentTransport agent_transport = AgentTransport::virtio_serial;
};

struct Drive {
  std::string id;  // stable name; the guest finds the disk by it (virtio-blk serial)
  std::filesystem::path path;
  bool read_only = false;
};

struct Nic {
  std::string id;   // "eth0"
  std::string tap;  // host tap device, inside the namespace the VMM joins
  std::string mac;  // "02:fc:00:00:00:02"
};

struct VmSpec {
  std::string name;            // for log lines and process titles
  std::filesystem::path dir;   // the VM's private directory; the VMM keeps its sockets,
                               // guest-memory file and logs here
  unsigned vcpus = 1;
  unsigned memory_mib = 256;
  std::filesystem::path kernel;
  std::filesystem::path initrd;  // empty: none
  std::string cmdline;
  std::vector<Drive> drives;     // in order; the guest sees them as vda, vdb, ...
  std::vector<Nic> nics;
  // Unix socket through which the host reaches the guest agent (Vm::connect_agent). What
  // listens there depends on the VMM's AgentTransport: vmm-qemu's virtio-serial chardev,
  // or Firecracker's vsock device (whose guest-initiated connections land on
  // "<agent_socket>_<port>"). Empty: no agent channel.
  std::filesystem::path agent_socket;
  // File the guest's serial console is appended to.
  std::filesystem::path console_log;
  // Namespace files the VMM process joins before exec (user namespace before net).
  std::vector<std::filesystem::path> namespaces;
  nlohmann::json mmds;            // null: no MMDS; else the MMDS data store (VMMs with mmds)
  nlohmann::json vmm_options = nlohmann::json::object();  // opaque, for the VMM plugin
};

// The files of a snapshot, as a VMM writes and reads them.
struct SnapshotFiles {
  std::filesystem::path state;   // device/vCPU state
  std::filesystem::path memory;  // guest memory image
};

enum class MemorySourceKind { file, uffd };

// Where a restored VM's memory comes from.
struct MemorySource {
  MemorySourceKind kind = MemorySourceKind::file;
  // file: the memory image, mapped MAP_PRIVATE (never written through);
  // uffd: the page server's unix socket.
  std::filesystem::path path;
};

struct RestoreSpec {
  // The clone's own layout: dir, drives (same ids and order as at snapshot time, new
  // paths), nics (same ids, taps of the clone's namespace), agent socket, console, namespaces.
  // vcpus, memory_mib, kernel, initrd and cmdline are taken from the snapshot and ignored.
  VmSpec vm;
  SnapshotFiles snapshot;
  MemorySource memory;
  bool resume = true;  // resume the guest once loaded
  // The restored VM is to be snapshotted itself later (a cached start: to its user an
  // ordinary VM), with file memory. A VMM that cannot write out a private mapping of the
  // image (vmm-qemu) gives the VM its own copy of it instead (a reflink where the
  // filesystem shares extents, else a sparse copy), which its pages then no longer share
  // with other restores of the image. VMMs that snapshot any VM ignore it.
  bool snapshottable = false;
  // uffd memory: called once, on the restoring thread, with the VMM's pid as soon as its
  // process exists and before the snapshot is loaded, so the page server can admit that pid
  // (a server serves only the VMMs it was told of). The VMM may already be connecting to
  // the server meanwhile: the server holds such a connection until the pid is announced.
  // A failure ends the restore (the VMM is killed). Unset: nothing is announced.
  std::function<Status(pid_t)> announce_vmm;
};

// A running (or paused) VM. Owns its VMM process: destroying the handle kills the VMM
// and removes the runtime files it made in VmSpec::dir (sockets, its own RAM file), never
// the directory itself or files the caller put there.
// Threading: one thread at a time; every call may block up to its stated bound. Nothing
// here throws: failures are Status values.
class FCVM_SDK_API Vm {
 public:
  virtual ~Vm() = default;

  // The VMM process. Valid for the handle's life.
  virtual pid_t pid() const = 0;
  // Readable (EPOLLIN) once the VMM process has exited; owned by the handle.
  virtual int exit_fd() const = 0;
  // The VMM's exit status once it has exited, else nullopt. Never blocks.
  virtual std::optional<ExitStatus> exited() = 0;

  // Pauses all vCPUs. Idempotent. Fails if the VMM is gone or does not answer in 10 s.
  virtual Status pause() = 0;
  // Resumes vCPUs. Idempotent. Same failure and time bound as pause().
  virtual Status resume() = 0;
  // Writes a full snapshot while paused (precondition; fails with invalid_argument
  // otherwise). Writes to temp names and renames, so `files` are whole or absent. A VMM
  // that cannot snapshot this VM (vmm-qemu: one restored from a private memory mapping)
  // fails with unavailable. Bounded by the plugin's snapshot timeout (vmm-qemu: 60 s plus
  // the memory copy). The files are the caller's; the VM stays paused either way.
  virtual Status snapshot(const SnapshotFiles& files) = 0;
  // Asks the guest to power off (ACPI), waits up to `timeout`, then kills the VMM. Returns
  // once the VMM has exited. Idempotent.
  virtual Status shutdown(std::chrono::milliseconds timeout) = 0;
  // Kills the VMM at once and reaps it. Idempotent.
  virtual void kill() = 0;

  // Connects to the guest agent's channel and returns a stream socket carrying the agent
  // protocol, after any transport handshake (vsock: Firecracker's "CONNECT <port>\n" /
  // "OK <port>\n"). Retries until `deadline` while the guest is not listening yet. The
  // caller owns the fd.
  // The fd is blocking, close-on-exec, and nothing has been read from it beyond the
  // transport handshake. Errors: timeout (the deadline passed; the message names the
  // socket), unavailable (the VMM exited meanwhile, or the spec had no agent_socket),
  // io. May be called again after the previous connection closed (a restored VM).
  virtual Result<UniqueFd> connect_agent(std::chrono::steady_clock::time_point deadline) = 0;
};

class FCVM_SDK_API VmmBackend : public Backend {
 public:
  PluginKind kind() const final { return PluginKind::vmm; }

  // What this backend can do on any host (probe() says whether it runs on this one).
  // Constant for the backend's life; cheap; never fails; thread-safe.
  virtual VmmCapabilities capabilities() const = 0;

  // Starts a VM and returns once the VMM process runs and its control socket answers (the
  // guest may still be booting); bounded by the plugin's control timeout (vmm-qemu: 10 s).
  // The caller owns the returned handle, and with it the process. On failure nothing is
  // left running, runtime files are removed, and the message names the cause (missing
  // kernel, VMM binary, bad spec). Thread-safe; never throws.
  virtual Result<std::unique_ptr<Vm>> launch(const VmSpec& spec) = 0;

  // Starts a VMM from a snapshot, with memory from `spec.memory`, and returns once the
  // snapshot is loaded (and the guest resumed, if asked); bounded by the plugin's load
  // timeout (vmm-qemu: 60 s). A memory source the backend cannot use (see capabilities())
  // fails with unavailable before anything starts. Same ownership and failure rules as
  // launch(). Thread-safe; never throws.
  virtual Result<std::unique_ptr<Vm>> restore(const RestoreSpec& spec) = 0;
};

}  // namespace fcvm
