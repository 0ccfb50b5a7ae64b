// What a guest does after an ATTACH (LinuxGuest::resync): each step is best effort, logs
// its failure and returns false, because a clone that runs with a stale clock beats one
// that powers off.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fcvm::agent {

// Sets CLOCK_REALTIME to `wall_time_ns` (ns since the epoch).
bool step_wall_clock(std::int64_t wall_time_ns);

// Lowercase hex to bytes; empty on malformed input.
std::vector<unsigned char> decode_hex(std::string_view hex);

// Mixes `bytes` into the kernel RNG through `urandom` (/dev/urandom): RNDADDENTROPY, which
// also credits the entropy, then RNDRESEEDCRNG so the CRNG is rekeyed at once; plain
// write() (mixes, credits nothing, no rekey) when the ioctls are refused.
bool add_entropy(const std::vector<unsigned char>& bytes, const char* urandom = "/dev/urandom");

// Deletes every entry of the IPv4 neighbour (ARP) cache listed in `arp_table`
// (/proc/net/arp). Returns false when any deletion failed.
bool flush_neighbour_cache(const char* arp_table = "/proc/net/arp");

}  // namespace fcvm::agent
