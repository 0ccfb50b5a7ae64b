// ContainerRequest: everything `fcvm podman run` was asked to do, parsed and checked.
#pragma once

#include <signal.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "fcvm/network.h"
#include "fcvm/result.h"
#include "health/health_check.h"
#include "image/image_store.h"
#include "image/process_overrides.h"

namespace fcvm {

struct ContainerRequest {
  std::string image;                  // reference, as skopeo spells it
  std::optional<std::string> name;    // --name; generated when absent
  std::optional<std::string> hostname;  // --hostname; the VM's name when absent
  int stop_signal = SIGTERM;          // --stop-signal: what `fcvm stop` sends the process first
  bool read_only = false;             // --read-only: the container's root mounted read-only
  bool init = false;                  // --init: an init as PID 1, the process its child
  ProcessOverrides process;
  unsigned vcpus = 1;                 // --cpus
  unsigned memory_mib = 256;          // --memory
  bool remove = false;                // --rm
  bool interactive = false;           // -i: our stdin is the container's
  bool tty = false;                   // -t: a pseudo-terminal in the guest
  bool detach = false;                // -d
  std::vector<PortMapping> ports;     // -p
  std::optional<std::filesystem::path> kernel;  // --kernel: the user's own guest kernel
  PullPolicy pull = PullPolicy::missing;        // --pull, as podman's default
  // Restore the run's startup snapshot when there is one, else take it (session/startup_cache.h);
  // false: --no-snapshot, always boot and keep nothing.
  bool startup_snapshot = true;
  HealthCheckSpec health;             // --health-*; -d then waits until healthy
  std::uint64_t log_max_bytes = 0;    // Config::log_max_bytes; 0: logs are not capped
};

// --hostname: 1-64 characters of [A-Za-z0-9.-] (what the guest agent and /etc/hosts take).
Status check_hostname(const std::string& hostname);

// --stop-signal: a number 1-64, a name with or without SIG in any case (TERM, sigusr1), or
// RTMIN, RTMIN+N, RTMAX, RTMAX-N.
Result<int> parse_stop_signal(const std::string& text);

// "512", "512m", "512M", "1g", "1G" → MiB. Errors name the flag.
Result<unsigned> parse_memory_mib(const std::string& text);

// Guest memory bounds: below the minimum the guest kernel and agent do not come up (16 MiB
// hangs at boot); the maximum is what the parser accepts, before the host check.
inline constexpr unsigned kMinGuestMemoryMib = 64;
inline constexpr unsigned kMaxGuestMemoryMib = 1024 * 1024;

// "[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]" or "GUEST_PORT" (host port = guest port).
Result<PortMapping> parse_port_mapping(const std::string& text);

}  // namespace fcvm
