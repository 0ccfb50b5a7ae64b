#include "snapshot/snapshot_manifest.h"

#include "fcvm/atomic_file.h"

namespace fcvm {
namespace {

using json = nlohmann::json;

constexpr const char* kManifestFile = "manifest.json";

std::filesystem::path under(const std::filesystem::path& dir, const std::filesystem::path& rel) {
  return rel.empty() ? rel : dir / rel;
}

// doc[key] as T; a missing required key or a wrong type throws a message naming the key.
template <class T>
void read(const json& doc, const char* key, T& out, bool required = false) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) {
    if (required) throw std::runtime_error(std::string("field '") + key + "' is missing");
    return;
  }
  try {
    out = it->get<T>();
  } catch (const json::exception& e) {
    throw std::runtime_error(std::string("field '") + key + "': " + e.what());
  }
}

}  // namespace

SnapshotFiles SnapshotManifest::files(const std::filesystem::path& dir) const {
  return SnapshotFiles{under(dir, state_file), under(dir, memory_file)};
}

DiskLease SnapshotManifest::disks_in(const std::filesystem::path& dir) const {
  DiskLease lease = disks;
  for (auto& d : lease.drives) {
    if (d.path.is_relative()) d.path = dir / d.path;
  }
  return lease;
}

json to_json(const SnapshotManifest& m) {
  json plugins = json::object();
  for (const auto& [kind, name] : m.plugins) plugins[to_string(kind)] = name;
  return {{"version", SnapshotManifest::kVersion},
          {"tag", m.tag},
          {"created", m.created},
          {"source_name", m.source_name},
          {"source_id", m.source_id},
          {"image", m.image},
          {"disk_only", m.disk_only},
          {"plugins", std::move(plugins)},
          {"vmm_version", m.vmm_version},
          {"machine",
           {{"vcpus", m.machine.vcpus},
            {"memory_mib", m.machine.memory_mib},
            {"kernel", m.machine.kernel.string()},
            {"initrd", m.machine.initrd.string()},
            {"image_digest", m.machine.image_digest}}},
          {"state_file", m.state_file.string()},
          {"memory_file", m.memory_file.string()},
          {"disks", m.disks},
          {"network", m.network ? json(*m.network) : json(nullptr)},
          {"main_process", agent::to_json(m.main_process)},
          {"rootfs", m.rootfs.string()},
          {"boot_id", m.boot_id},
          {"pause_ms", m.pause_ms},
          {"cache_key", m.cache_key},
          {"cache_healthy", m.cache_healthy},
          {"startup_output", m.startup_output.string()}};
}

Result<SnapshotManifest> snapshot_manifest_from_json(const json& doc) {
  if (!doc.is_object()) return error(Errc::invalid_argument, "snapshot manifest: not a JSON object");
  SnapshotManifest m;
  try {
    int version = 0;
    read(doc, "version", version, true);
    if (version > SnapshotManifest::kVersion) {
      return error(Errc::invalid_argument,
                   "snapshot manifest version " + std::to_string(version) +
                       " is newer than this fcvm reads (" +
                       std::to_string(SnapshotManifest::kVersion) + "); upgrade fcvm");
    }
    if (version < 1) return error(Errc::invalid_argument, "snapshot manifest: bad version");
    read(doc, "tag", m.tag, true);
    read(doc, "created", m.created);
    read(doc, "source_name", m.source_name);
    read(doc, "source_id", m.source_id);
    read(doc, "image", m.image);
    read(doc, "disk_only", m.disk_only);
    std::map<std::string, std::string> plugins;
    read(doc, "plugins", plugins);
    for (const auto& [kind_text, name] : plugins) {
      auto kind = parse_plugin_kind(kind_text);
      if (!kind) throw std::runtime_error("field 'plugins': unknown kind '" + kind_text + "'");
      m.plugins[*kind] = name;
    }
    read(doc, "vmm_version", m.vmm_version);
    if (auto it = doc.find("machine"); it != doc.end()) {
      if (!it->is_object()) throw std::runtime_error("field 'machine': not an object");
      read(*it, "vcpus", m.machine.vcpus);
      read(*it, "memory_mib", m.machine.memory_mib);
      std::string file;
      read(*it, "kernel", file);
      m.machine.kernel = file;
      file.clear();
      read(*it, "initrd", file);
      m.machine.initrd = file;
      read(*it, "image_digest", m.machine.image_digest);
    }
    std::string path;
    read(doc, "state_file", path);
    m.state_file = path;
    path.clear();
    read(doc, "memory_file", path);
    m.memory_file = path;
    read(doc, "disks", m.disks, true);
    if (auto it = doc.find("network"); it != doc.end() && !it->is_null()) {
      NetworkLease net;
      read(doc, "network", net);
      m.network = std::move(net);
    }
    std::string why;
    auto process = agent::parse_process(doc.at("main_process").dump(), &why);
    if (!process) throw std::runtime_error("field 'main_process': " + why);
    m.main_process = std::move(*process);
    path.clear();
    read(doc, "rootfs", path);
    m.rootfs = path;
    read(doc, "boot_id", m.boot_id);
    read(doc, "pause_ms", m.pause_ms);
    read(doc, "cache_key", m.cache_key);
    read(doc, "cache_healthy", m.cache_healthy);
    path.clear();
    read(doc, "startup_output", path);
    m.startup_output = path;
  } catch (const std::exception& e) {
    return error(Errc::invalid_argument, std::string("snapshot manifest: ") + e.what());
  }
  for (const auto& rel : {m.state_file, m.memory_file, m.startup_output}) {
    if (rel.is_absolute() || rel.string().find("..") != std::string::npos) {
      return error(Errc::invalid_argument,
                   "snapshot manifest: " + rel.string() + " is not a name inside the snapshot");
    }
  }
  return m;
}

Result<SnapshotManifest> read_snapshot_manifest(const std::filesystem::path& dir) {
  auto text = read_file(dir / kManifestFile);
  if (!text) return text.status();
  json doc = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return error(Errc::invalid_argument, (dir / kManifestFile).string() + " is not valid JSON");
  }
  auto m = snapshot_manifest_from_json(doc);
  if (!m) return m.status().with_context((dir / kManifestFile).string() + ": ");
  return m;
}

Status write_snapshot_manifest(const std::filesystem::path& dir, const SnapshotManifest& manifest) {
  return write_file_atomic(dir / kManifestFile, to_json(manifest).dump(2) + "\n", 0600);
}

}  // namespace fcvm
