#include "session/startup_cache.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "setup/sha256.h"

namespace fcvm {
namespace {

Result<nlohmann::json> file_identity(const std::filesystem::path& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return errno_status("stat " + path.string());
  return nlohmann::json{{"path", path.string()},
                        {"size", static_cast<std::uint64_t>(st.st_size)},
                        {"mtime_ns", static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec}};
}

}  // namespace

Result<std::string> startup_cache_key(const StartupInputs& in) {
  auto kernel = file_identity(in.assets.kernel);
  if (!kernel) return kernel.status();
  auto initrd = file_identity(in.assets.initrd);
  if (!initrd) return initrd.status();
  nlohmann::json plugins = nlohmann::json::object();
  for (const auto& [kind, name] : in.plugins) plugins[to_string(kind)] = name;
  // Versioned, so that a change of what the key covers invalidates every older entry.
  const nlohmann::json canonical = {{"key_version", 3},
                                    {"image", in.image_digest},
                                    {"process", agent::to_json(in.process)},
                                    {"vcpus", in.vcpus},
                                    {"memory_mib", in.memory_mib},
                                    {"read_only", in.read_only},
                                    {"kernel", *kernel},
                                    {"initrd", *initrd},
                                    {"plugins", plugins},
                                    {"vmm_version", in.vmm_version},
                                    {"moment", in.moment}};
  return sha256_hex(canonical.dump());
}

std::string startup_moment_of(const HealthCheckSpec& health) {
  if (!health.enabled()) return {};
  // What decides "healthy"; the timings only decide how soon it is seen.
  return nlohmann::json{{"healthy", {{"command", health.command}, {"url", health.url}}}}.dump();
}

std::string encode_startup_output(const std::vector<OutputChunk>& chunks) {
  std::string out;
  for (const auto& c : chunks) {
    out.push_back(c.is_stderr ? 'e' : 'o');
    const auto n = static_cast<std::uint32_t>(c.bytes.size());
    for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
    out += c.bytes;
  }
  return out;
}

Result<std::vector<OutputChunk>> decode_startup_output(std::string_view bytes) {
  std::vector<OutputChunk> chunks;
  std::size_t total = 0;
  while (!bytes.empty()) {
    if (bytes.size() < 5 || (bytes[0] != 'o' && bytes[0] != 'e')) {
      return error(Errc::protocol, "startup output: malformed chunk header");
    }
    std::uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[1 + i])) << (8 * i);
    total += n;
    if (n > bytes.size() - 5 || total > kMaxStartupOutput) {
      return error(Errc::protocol, "startup output: a chunk runs past the end or the size limit");
    }
    chunks.push_back({bytes[0] == 'e', std::string(bytes.substr(5, n))});
    bytes.remove_prefix(5 + n);
  }
  return chunks;
}

std::string startup_cache_tag(const std::string& key) { return "cache-" + key.substr(0, 20); }

void touch_startup_snapshot(const std::filesystem::path& dir) {
  (void)::utimensat(AT_FDCWD, dir.c_str(), nullptr, 0);  // best effort: only the order suffers
}

Status remove_startup_snapshot(SnapshotStore& store, const StoredSnapshot& snap, StorageBackend& storage,
                               const std::string& storage_name) {
  const SnapshotManifest& m = snap.manifest;
  if (!m.disks.drives.empty()) {
    if (m.disks.plugin != storage_name) return error(Errc::invalid_argument, "its disks belong to " + m.disks.plugin);
    FCVM_RETURN_IF_ERROR(store.destroy_disks(snap, storage));
  }
  return store.remove(m.tag);
}

std::vector<std::string> prune_startup_snapshots(
    const SnapshotStore& store, const std::string& current, std::size_t keep,
    const std::function<Status(const StoredSnapshot&)>& remove, const LoggerPtr& log) {
  struct Entry {
    StoredSnapshot snap;
    std::int64_t used_ns;
  };
  std::vector<Entry> entries;
  for (auto& s : store.list()) {
    if (s.manifest.cache_key.empty()) continue;
    struct stat st{};
    const std::int64_t used = ::stat(s.dir.c_str(), &st) == 0
                                  ? static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec
                                  : 0;
    entries.push_back({std::move(s), used});
  }
  std::sort(entries.begin(), entries.end(), [&](const Entry& a, const Entry& b) {
    const bool a_current = a.snap.manifest.tag == current, b_current = b.snap.manifest.tag == current;
    if (a_current != b_current) return a_current;
    return a.used_ns > b.used_ns;
  });
  std::vector<std::string> removed;
  for (std::size_t i = keep; i < entries.size(); ++i) {
    const auto& snap = entries[i].snap;
    if (snap.manifest.tag == current) continue;
    if (Status st = remove(snap); !st.ok()) {
      log->info("startup snapshot " + snap.manifest.tag + " kept: " + st.message());
      continue;
    }
    log->info("startup snapshot " + snap.manifest.tag + " evicted (least recently used of more than " +
              std::to_string(keep) + ")");
    removed.push_back(snap.manifest.tag);
  }
  return removed;
}

}  // namespace fcvm
