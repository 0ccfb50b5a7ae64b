#include "engine/vm_cleanup.h"

#include "fcvm/network.h"
#include "fcvm/path_beneath.h"
#include "fcvm/storage.h"
#include "state/lease_paths.h"
#include "state/state_store.h"

namespace fcvm {
namespace {

// The plugin that made a lease: the lease's own name, else the record's choice for `kind`.
std::string lease_plugin(const std::string& from_lease, const VmRecord& r, PluginKind kind) {
  if (!from_lease.empty()) return from_lease;
  auto it = r.plugins.find(kind);
  return it == r.plugins.end() ? std::string() : it->second;
}

template <class T>
Result<std::shared_ptr<T>> load_backend(const BackendLoader& load, const std::string& name, PluginKind kind) {
  if (name.empty()) {
    return error(Errc::not_found, std::string("the record names no ") + to_string(kind) +
                                      " plugin for its lease");
  }
  auto backend = load(name, kind);
  if (!backend.ok()) return backend.status();
  return std::static_pointer_cast<T>(std::move(backend).value());
}

}  // namespace

VmCleanup clean_up_vm(const std::filesystem::path& data_dir, StateStore& state, const BackendLoader& load,
                      const VmRecord& r) {
  VmCleanup out;
  out.name = r.name;
  // Everything the record names is checked before anything is torn down.
  if (!r.vm_dir.empty() && r.vm_dir.lexically_normal() != (data_dir / "vms" / r.id).lexically_normal()) {
    // Every VM's directory is vms/<its id>; a record naming any other is not fcvm's.
    out.problem = "its directory " + r.vm_dir.string() + " is not a VM directory of the data dir " +
                  (data_dir / "vms").string() + "; remove it by hand, then try again";
    return out;
  }
  if (r.disk) {
    if (Status st = check_lease_paths(data_dir, r.vm_dir, *r.disk); !st.ok()) {
      out.problem = "its disk lease is not fcvm's: " + st.message() + "; remove the record's files by hand";
      return out;
    }
  }
  if (r.network) {
    const std::string name = lease_plugin(r.network->plugin, r, PluginKind::network);
    auto backend = load_backend<NetworkBackend>(load, name, PluginKind::network);
    if (!backend.ok()) {
      out.problem = "cannot load network plugin '" + name + "': " + backend.status().message();
      return out;
    }
    if (Status st = (*backend)->teardown(*r.network); !st.ok()) {
      out.problem = "network teardown (" + name + "): " + st.message();
      return out;
    }
    out.cleaned.push_back("network (" + name + ")");
  }
  if (r.disk) {
    const std::string name = lease_plugin(r.disk->plugin, r, PluginKind::storage);
    auto backend = load_backend<StorageBackend>(load, name, PluginKind::storage);
    if (!backend.ok()) {
      out.problem = "cannot load storage plugin '" + name + "': " + backend.status().message();
      return out;
    }
    if (Status st = (*backend)->destroy(*r.disk); !st.ok()) {
      out.problem = "disk cleanup (" + name + "): " + st.message();
      return out;
    }
    out.cleaned.push_back("disks (" + name + ")");
  }
  if (!r.vm_dir.empty()) {
    std::error_code ec;
    const bool existed = std::filesystem::exists(std::filesystem::symlink_status(data_dir / "vms" / r.id, ec));
    if (Status st = remove_all_beneath(data_dir, r.vm_dir); !st.ok()) {
      out.problem = st.message();
      return out;
    }
    if (existed) out.cleaned.push_back(r.vm_dir.string());
  }
  Status st = state.remove(r.id);
  if (!st.ok() && st.code() != Errc::not_found) {  // not_found: a concurrent gc got there
    out.problem = "remove record: " + st.message();
    return out;
  }
  out.removed = true;
  return out;
}

Status remove_snapshot(SnapshotStore& store, const BackendLoader& load, const StoredSnapshot& snap) {
  const SnapshotManifest& m = snap.manifest;
  const auto chosen = m.plugins.find(PluginKind::storage);
  const std::string name = !m.disks.plugin.empty() ? m.disks.plugin
                           : chosen != m.plugins.end() ? chosen->second
                                                       : std::string();
  if (!m.disks.drives.empty()) {
    if (name.empty()) return error(Errc::not_found, "snapshot " + m.tag + " names no storage plugin for its disks");
    auto backend = load_backend<StorageBackend>(load, name, PluginKind::storage);
    if (!backend) return backend.status().with_context("snapshot " + m.tag + ": cannot load storage plugin '" + name + "': ");
    FCVM_RETURN_IF_ERROR(store.destroy_disks(snap, **backend).with_context("snapshot " + m.tag + ": disks: "));
  }
  return store.remove(m.tag);
}

}  // namespace fcvm
