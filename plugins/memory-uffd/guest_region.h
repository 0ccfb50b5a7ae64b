// GuestRegion and the parser of Firecracker's UFFD handshake message.
//
// Firecracker (and the QEMU preload shim) sends exactly one message on the page server's
// socket: a JSON array of the guest memory regions it registered with the userfaultfd,
//   [{"base_host_virt_addr": u64, "size": u64, "offset": u64, "page_size": u64,
//     "page_size_kib": u64}, ...]
// with the uffd as SCM_RIGHTS. page_size_kib is deprecated and carries bytes despite its
// name; versions before it sent only the first three fields (the host page size applies).
// The message comes from a VMM that runs guest-controlled code: everything is checked.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "fcvm/result.h"

namespace fcvm::uffd {

struct GuestRegion {
  std::uint64_t base = 0;       // base_host_virt_addr, in the VMM's address space
  std::uint64_t size = 0;       // bytes
  std::uint64_t offset = 0;     // where the region's bytes start in the memory image
  std::uint64_t page_size = 0;  // bytes, a power of two

  std::uint64_t end() const { return base + size; }
  bool contains(std::uint64_t addr) const { return addr >= base && addr - base < size; }
  std::uint64_t pages() const { return size / page_size; }

  nlohmann::json to_json() const;
  friend bool operator==(const GuestRegion&, const GuestRegion&) = default;
};

struct HandshakeLimits {
  std::size_t max_regions = 64;
  std::uint64_t max_region_size = std::uint64_t{1} << 40;  // 1 TiB: anything more is absurd
  std::uint64_t max_page_size = std::uint64_t{1} << 30;    // 1 GiB hugetlb pages
};

// Parses and checks one handshake message against an image of `image_size` bytes and the
// host page size `host_page_size`. Errors (protocol) name the offending region and field:
// not JSON, not a non-empty array, too many regions, a missing or non-integer field, a page
// size that is not a power of two at least the host's, a misaligned address, size or
// offset, a region past the end of the image or wrapping the address space, and regions
// that overlap in the VMM's address space. Returns the regions sorted by base. Pure.
Result<std::vector<GuestRegion>> parse_handshake(std::string_view message, std::uint64_t image_size,
                                                 std::uint64_t host_page_size,
                                                 const HandshakeLimits& limits = {});

// The regions of a record written by to_json() (same checks as a handshake).
Result<std::vector<GuestRegion>> regions_from_json(const nlohmann::json& array,
                                                   std::uint64_t image_size,
                                                   std::uint64_t host_page_size,
                                                   const HandshakeLimits& limits = {});

}  // namespace fcvm::uffd
