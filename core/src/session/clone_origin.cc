#include "session/clone_origin.h"

#include "plugin/plugin_registry.h"
#include "session/guest_assets.h"
#include "session/image_boot.h"
#include "session/snapshot_restore.h"
#include "snapshot/serve_control.h"

namespace fcvm {

Status check_clone_backends(const SnapshotManifest& m, const SessionBackends& backends) {
  if (m.is_cache()) {
    return error(Errc::invalid_argument, "snapshot '" + m.tag + "' is a startup snapshot of 'fcvm podman run', " +
                                             "which restores it for runs of that container; to clone a VM, " +
                                             "'fcvm snapshot create' it");
  }
  for (auto kind : {PluginKind::vmm, PluginKind::storage, PluginKind::network}) {
    auto chosen = backends.names.find(kind);
    const std::string name = chosen == backends.names.end() ? "" : chosen->second;
    auto it = m.plugins.find(kind);
    const std::string wanted = it == m.plugins.end() ? "" : it->second;
    if (wanted != name) {
      return error(Errc::invalid_argument, "snapshot '" + m.tag + "' was taken with " + to_string(kind) + " " +
                                               (wanted.empty() ? "none" : wanted) + "; pass --plugin " +
                                               to_string(kind) + "=" + (wanted.empty() ? "none" : wanted));
    }
  }
  // VMM state files are only promised to load into the VMM version that wrote them.
  if (const auto version = PluginRegistry::plugin_version_of(backends.vmm);
      !m.vmm_version.empty() && version != m.vmm_version) {
    auto vmm = backends.names.find(PluginKind::vmm);
    return error(Errc::unavailable, "snapshot '" + m.tag + "' was written by " +
                                        (vmm == backends.names.end() ? "its VMM plugin" : vmm->second) + " " +
                                        m.vmm_version + ", this is " + version +
                                        "; take a new snapshot with 'fcvm snapshot create'");
  }
  return ok_status();
}

Result<std::unique_ptr<VmOrigin>> clone_origin(const CloneSpec& spec) {
  const SnapshotManifest& m = spec.snapshot.manifest;
  const auto& dir = spec.snapshot.dir;
  if (m.disk_only) {
    // No memory: the clone boots the snapshot's container afresh from a copy of its disks,
    // on the snapshot's machine where the manifest says what it was.
    ImageBootSpec boot;
    boot.image_ref = m.image;
    std::optional<std::filesystem::path> kernel = spec.kernel;
    if (!kernel && !m.machine.kernel.empty() && std::filesystem::exists(m.machine.kernel)) kernel = m.machine.kernel;
    auto assets = find_guest_assets(spec.data_dir, kernel, spec.log);
    if (!assets) return assets.status();
    boot.assets = *assets;
    if (m.machine.vcpus > 0) boot.vcpus = m.machine.vcpus;
    if (m.machine.memory_mib > 0) boot.memory_mib = m.machine.memory_mib;
    boot.rootfs = ImageRootfs{m.machine.image_digest, m.rootfs};
    boot.process = m.main_process;
    boot.snapshot_disks = m.disks_in(dir);
    boot.snapshot_name = m.tag;
    return std::unique_ptr<VmOrigin>(std::make_unique<ImageBoot>(std::move(boot)));
  }
  SnapshotRestoreSpec restore;
  restore.snapshot_name = m.tag;
  restore.disks = m.disks_in(dir);
  restore.network = m.network;
  restore.files = m.files(dir);
  if (const auto& server = spec.memory.page_server) {
    restore.memory = MemorySource{MemorySourceKind::uffd, server->memory_socket};
    restore.memory_plugin = server->plugin;
    restore.announce_vmm = [control = server->control_socket](pid_t vmm) { return announce_vmm(control, vmm); };
  } else {
    restore.memory = MemorySource{MemorySourceKind::file, restore.files.memory};
    restore.memory_plugin = spec.memory.plugin;
    restore.memory_backend = spec.memory.backend;
  }
  restore.exec = ExecDefaults{m.main_process, m.rootfs};
  restore.serve = spec.serve;
  restore.boot_id = m.boot_id;
  restore.machine = m.machine;
  return std::unique_ptr<VmOrigin>(std::make_unique<SnapshotRestore>(std::move(restore)));
}

}  // namespace fcvm
