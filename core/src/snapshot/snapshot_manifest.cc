#include "snapshot/snapshot_manifest.h"

#include "fcvm/atomic_file.h"

namespace fcvm {
namespace {

using nlohmann::json;

template <class T>
Status read_field(const json& doc, const char* key, T& out, bool required) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) {
    if (required) return error(Errc::invalid_argument, std::string("field '") + key + "' is missing");
    return ok_status();
  }
  try {
    out = it->get<T>();
  } catch (const json::exception& e) {
    return error(Errc::invalid_argument, std::string("field '") + key + "': " + e.what());
  }
  return ok_status();
}

template <class T>
Status read_optional(const json& doc, const char* key, std::optional<T>& out) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return ok_status();
  T value{};
  FCVM_RETURN_IF_ERROR(read_field(doc, key, value, true));
  out = std::move(value);
  return ok_status();
}

Status parse(const json& doc, SnapshotManifest& m) {
  if (!doc.is_object()) {
    return error(Errc::invalid_argument, std::string("expected an object, got ") + doc.type_name());
  }
  int version = 0;
  FCVM_RETURN_IF_ERROR(read_field(doc, "format_version", version, true));
  if (version != SnapshotManifest::kFormatVersion) {
    return error(Errc::invalid_argument,
                 "snapshot format version " + std::to_string(version) + ", but this fcvm reads " +
                     std::to_string(SnapshotManifest::kFormatVersion) +
                     (version > SnapshotManifest::kFormatVersion
                          ? "; restore it with the newer fcvm that wrote it"
                          : "; take the snapshot again with this fcvm"));
  }
  const json* vmm = nullptr;
  if (auto it = doc.find("vmm"); it != doc.end() && it->is_object()) vmm = &*it;
  if (!vmm) return error(Errc::invalid_argument, "field 'vmm' is missing");
  FCVM_RETURN_IF_ERROR(read_field(*vmm, "name", m.vmm.name, true).with_context("vmm: "));
  FCVM_RETURN_IF_ERROR(read_field(*vmm, "version", m.vmm.version, true).with_context("vmm: "));
  FCVM_RETURN_IF_ERROR(read_field(doc, "memory_plugin", m.memory_plugin, false));
  FCVM_RETURN_IF_ERROR(read_field(doc, "vcpus", m.vcpus, true));
  FCVM_RETURN_IF_ERROR(read_field(doc, "memory_mib", m.memory_mib, true));
  FCVM_RETURN_IF_ERROR(read_field(doc, "cmdline", m.cmdline, false));
  std::string state, memory;
  FCVM_RETURN_IF_ERROR(read_field(doc, "state_file", state, true));
  FCVM_RETURN_IF_ERROR(read_field(doc, "memory_file", memory, true));
  m.files = {state, memory};
  FCVM_RETURN_IF_ERROR(read_optional(doc, "disks", m.disks));
  FCVM_RETURN_IF_ERROR(read_optional(doc, "network", m.network));
  FCVM_RETURN_IF_ERROR(read_field(doc, "image_reference", m.image_reference, false));
  FCVM_RETURN_IF_ERROR(read_field(doc, "image_digest", m.image_digest, false));
  std::string kernel, initrd;
  FCVM_RETURN_IF_ERROR(read_field(doc, "kernel", kernel, true));
  FCVM_RETURN_IF_ERROR(read_field(doc, "initrd", initrd, false));
  m.kernel = kernel;
  m.initrd = initrd;
  FCVM_RETURN_IF_ERROR(read_field(doc, "kernel_sha256", m.kernel_sha256, false));
  FCVM_RETURN_IF_ERROR(read_field(doc, "agent_protocol", m.agent_protocol, true));
  FCVM_RETURN_IF_ERROR(read_field(doc, "boot_id", m.boot_id, true));
  FCVM_RETURN_IF_ERROR(read_field(doc, "created", m.created, true));
  if (m.memory_mib == 0) return error(Errc::invalid_argument, "field 'memory_mib' must be positive");
  if (m.vcpus == 0) return error(Errc::invalid_argument, "field 'vcpus' must be positive");
  if (m.files.state.is_absolute() || m.files.memory.is_absolute()) {
    return error(Errc::invalid_argument,
                 "fields 'state_file' and 'memory_file' must be relative to the snapshot directory");
  }
  return ok_status();
}

}  // namespace

json to_json(const SnapshotManifest& m) {
  json doc = {
      {"format_version", SnapshotManifest::kFormatVersion},
      {"vmm", {{"name", m.vmm.name}, {"version", m.vmm.version}}},
      {"memory_plugin", m.memory_plugin},
      {"vcpus", m.vcpus},
      {"memory_mib", m.memory_mib},
      {"cmdline", m.cmdline},
      {"state_file", m.files.state.string()},
      {"memory_file", m.files.memory.string()},
      {"disks", m.disks ? json(*m.disks) : json()},
      {"network", m.network ? json(*m.network) : json()},
      {"image_reference", m.image_reference},
      {"image_digest", m.image_digest},
      {"kernel", m.kernel.string()},
      {"kernel_sha256", m.kernel_sha256},
      {"initrd", m.initrd.string()},
      {"agent_protocol", m.agent_protocol},
      {"boot_id", m.boot_id},
      {"created", m.created},
  };
  return doc;
}

Result<SnapshotManifest> snapshot_manifest_from_json(const json& doc) {
  SnapshotManifest m;
  Status st = parse(doc, m);
  if (!st.ok()) return st;
  return m;
}

Status write_snapshot_manifest(const std::filesystem::path& dir, const SnapshotManifest& manifest) {
  std::string text;
  try {
    text = to_json(manifest).dump(2) + "\n";
  } catch (const nlohmann::json::exception&) {
    return error(Errc::invalid_argument, "snapshot manifest: paths and names must be valid UTF-8");
  }
  return write_file_atomic(dir / SnapshotManifest::kFileName, text, 0600);
}

Result<SnapshotManifest> read_snapshot_manifest(const std::filesystem::path& dir) {
  const auto path = dir / SnapshotManifest::kFileName;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return error(Errc::not_found, path.string() + " not found: " + dir.string() +
                                      " is not an fcvm snapshot (or an incomplete one)");
  }
  auto text = read_file(path);
  if (!text) return text.status();
  json doc = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return error(Errc::invalid_argument,
                 path.string() + ": not valid JSON (truncated?); take the snapshot again");
  }
  auto manifest = snapshot_manifest_from_json(doc);
  if (!manifest) return manifest.status().with_context(path.string() + ": ");
  return manifest;
}

}  // namespace fcvm
