#include "guest_region.h"

#include <algorithm>
#include <bit>
#include <string>

namespace fcvm::uffd {
namespace {

Status bad(std::size_t index, const std::string& what) {
  return error(Errc::protocol, "handshake region " + std::to_string(index) + ": " + what);
}

// An unsigned integer field; absent is not an error (`present` tells).
Status read_u64(const nlohmann::json& region, std::size_t index, const char* key,
                std::uint64_t& out, bool& present) {
  auto it = region.find(key);
  present = it != region.end();
  if (!present) return ok_status();
  if (!it->is_number_unsigned()) {
    return bad(index, std::string(key) + " is not an unsigned integer");
  }
  out = it->get<std::uint64_t>();
  return ok_status();
}

Result<GuestRegion> check_region(const nlohmann::json& j, std::size_t index,
                                 std::uint64_t image_size, std::uint64_t host_page_size,
                                 const HandshakeLimits& limits) {
  if (!j.is_object()) return bad(index, "not a JSON object");
  GuestRegion r;
  bool present = false;
  for (auto [key, out] : {std::pair{"base_host_virt_addr", &r.base}, std::pair{"size", &r.size},
                          std::pair{"offset", &r.offset}}) {
    FCVM_RETURN_IF_ERROR(read_u64(j, index, key, *out, present));
    if (!present) return bad(index, std::string("missing field ") + key);
  }
  std::uint64_t page_size = 0, page_size_kib = 0;
  bool has_page_size = false, has_kib = false;
  FCVM_RETURN_IF_ERROR(read_u64(j, index, "page_size", page_size, has_page_size));
  FCVM_RETURN_IF_ERROR(read_u64(j, index, "page_size_kib", page_size_kib, has_kib));
  if (has_page_size && has_kib && page_size != page_size_kib) {
    return bad(index, "page_size " + std::to_string(page_size) + " and page_size_kib " +
                          std::to_string(page_size_kib) + " disagree");
  }
  r.page_size = has_page_size ? page_size : has_kib ? page_size_kib : host_page_size;
  if (!std::has_single_bit(r.page_size) || r.page_size < host_page_size ||
      r.page_size > limits.max_page_size) {
    return bad(index, "page size " + std::to_string(r.page_size) +
                          " is not a power of two between the host page size and 1 GiB");
  }
  if (r.size == 0 || r.size > limits.max_region_size) {
    return bad(index, "size " + std::to_string(r.size) + " is zero or absurd");
  }
  if (r.base % r.page_size || r.size % r.page_size || r.offset % r.page_size) {
    return bad(index, "base, size or offset is not a multiple of the page size");
  }
  if (r.base + r.size < r.base) return bad(index, "wraps the address space");
  if (r.offset > image_size || r.size > image_size - r.offset) {
    return bad(index, "bytes [" + std::to_string(r.offset) + ", +" + std::to_string(r.size) +
                          ") lie outside the " + std::to_string(image_size) +
                          "-byte memory image");
  }
  return r;
}

}  // namespace

nlohmann::json GuestRegion::to_json() const {
  return {{"base_host_virt_addr", base},
          {"size", size},
          {"offset", offset},
          {"page_size", page_size},
          {"page_size_kib", page_size}};
}

Result<std::vector<GuestRegion>> regions_from_json(const nlohmann::json& array,
                                                   std::uint64_t image_size,
                                                   std::uint64_t host_page_size,
                                                   const HandshakeLimits& limits) {
  if (!array.is_array() || array.empty()) {
    return error(Errc::protocol, "handshake is not a non-empty JSON array of regions");
  }
  if (array.size() > limits.max_regions) {
    return error(Errc::protocol, "handshake has " + std::to_string(array.size()) +
                                     " regions; at most " + std::to_string(limits.max_regions) +
                                     " are accepted");
  }
  std::vector<GuestRegion> regions;
  regions.reserve(array.size());
  for (std::size_t i = 0; i < array.size(); ++i) {
    auto r = check_region(array[i], i, image_size, host_page_size, limits);
    if (!r) return r.status();
    regions.push_back(*r);
  }
  std::sort(regions.begin(), regions.end(),
            [](const GuestRegion& a, const GuestRegion& b) { return a.base < b.base; });
  for (std::size_t i = 1; i < regions.size(); ++i) {
    if (regions[i].base < regions[i - 1].end()) {
      return error(Errc::protocol, "handshake regions overlap in the VMM's address space");
    }
  }
  return regions;
}

Result<std::vector<GuestRegion>> parse_handshake(std::string_view message, std::uint64_t image_size,
                                                 std::uint64_t host_page_size,
                                                 const HandshakeLimits& limits) {
  auto array = nlohmann::json::parse(message, nullptr, /*allow_exceptions=*/false);
  if (array.is_discarded()) return error(Errc::protocol, "handshake is not valid JSON");
  return regions_from_json(array, image_size, host_page_size, limits);
}

}  // namespace fcvm::uffd
