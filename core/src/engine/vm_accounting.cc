#include "engine/vm_accounting.h"

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "fcvm/unique_fd.h"

namespace fcvm {
namespace {

struct Extents {
  std::uint64_t shared = 0;
  std::uint64_t total = 0;
};

// The file's extents by FIEMAP; nullopt where the filesystem does not support it.
std::optional<Extents> fiemap_extents(int fd) {
  constexpr std::size_t kBatch = 256;
  std::vector<std::uint8_t> buf(sizeof(fiemap) + kBatch * sizeof(fiemap_extent));
  auto* map = reinterpret_cast<fiemap*>(buf.data());
  Extents out;
  std::uint64_t start = 0;
  for (;;) {
    std::memset(buf.data(), 0, buf.size());
    map->fm_start = start;
    map->fm_length = FIEMAP_MAX_OFFSET - start;
    map->fm_flags = FIEMAP_FLAG_SYNC;
    map->fm_extent_count = kBatch;
    if (::ioctl(fd, FS_IOC_FIEMAP, map) != 0) return std::nullopt;
    if (map->fm_mapped_extents == 0) return out;
    bool last = false;
    for (std::uint32_t i = 0; i < map->fm_mapped_extents; ++i) {
      const fiemap_extent& e = map->fm_extents[i];
      out.total += e.fe_length;
      if (e.fe_flags & FIEMAP_EXTENT_SHARED) out.shared += e.fe_length;
      start = e.fe_logical + e.fe_length;
      last = last || (e.fe_flags & FIEMAP_EXTENT_LAST);
    }
    if (last) return out;
  }
}

}  // namespace

std::optional<nlohmann::json> process_pss(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  if (!in) return std::nullopt;
  static const std::map<std::string, std::string> kFields = {
      {"Rss:", "rss"}, {"Pss:", "pss"}, {"Pss_Anon:", "pss_anon"}, {"Pss_File:", "pss_file"}, {"Pss_Shmem:", "pss_shmem"}};
  nlohmann::json out = nlohmann::json::object();
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    std::uint64_t kib = 0;
    if (!(fields >> key >> kib)) continue;
    if (auto it = kFields.find(key); it != kFields.end()) out[it->second] = kib * 1024;
  }
  if (!out.contains("pss")) return std::nullopt;
  return out;
}

nlohmann::json disk_usage(const std::filesystem::path& dir) {
  std::uint64_t apparent = 0, allocated = 0, shared = 0;
  bool fiemap_works = true;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    struct stat st{};
    if (::lstat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    const std::uint64_t blocks = static_cast<std::uint64_t>(st.st_blocks) * 512;
    apparent += static_cast<std::uint64_t>(st.st_size);
    allocated += blocks;
    if (st.st_nlink > 1) {  // another name of the same inode: nothing here is its own
      shared += blocks;
      continue;
    }
    UniqueFd fd(::open(e.path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    auto extents = fd ? fiemap_extents(fd.get()) : std::nullopt;
    if (!extents) {
      fiemap_works = false;
      continue;
    }
    // Extents are counted in whole blocks like st_blocks; clip to the allocation.
    shared += std::min(extents->shared, blocks);
  }
  return {{"apparent_bytes", apparent},
          {"allocated_bytes", allocated},
          {"shared_bytes", shared},
          {"owned_bytes", allocated - std::min(shared, allocated)},
          {"method", fiemap_works ? "fiemap" : "allocated"}};
}

}  // namespace fcvm
