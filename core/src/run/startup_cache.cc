#include "run/startup_cache.h"

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
  const nlohmann::json canonical = {{"key_version", 1},
                                    {"image", in.image_digest},
                                    {"process", agent::to_json(in.process)},
                                    {"vcpus", in.vcpus},
                                    {"memory_mib", in.memory_mib},
                                    {"kernel", *kernel},
                                    {"initrd", *initrd},
                                    {"plugins", plugins},
                                    {"vmm_version", in.vmm_version}};
  return sha256_hex(canonical.dump());
}

std::string startup_cache_tag(const std::string& key) { return "cache-" + key.substr(0, 20); }

void touch_startup_snapshot(const std::filesystem::path& dir) {
  (void)::utimensat(AT_FDCWD, dir.c_str(), nullptr, 0);  // best effort: only the order suffers
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
