#include "cli/serve_takeover.h"

#include <set>

#include "config/config.h"
#include "state/state_store.h"

namespace fcvm::cli {

std::optional<TakenOverServe> take_over_dead_serve(CommandContext& ctx, const std::string& tag,
                                                   const std::string& memory,
                                                   const std::optional<std::string>& name) {
  FileLock collecting = check(ctx.state().lock_collection());
  for (const auto& r : check(ctx.state().list())) {
    if (r.type != VmType::serve || r.snapshot != tag || r.alive()) continue;
    auto plugin = r.plugins.find(PluginKind::memory);
    std::error_code ec;
    if (plugin == r.plugins.end() || plugin->second != memory || r.vm_dir.empty() ||
        !std::filesystem::is_directory(r.vm_dir, ec)) {
      continue;
    }
    auto updated = ctx.state().update(r.id, [&](VmRecord& rec) {
      rec.process = ProcessIdentity::self();
      rec.status = VmStatus::creating;
      if (name) rec.name = *name;
      return ok_status();
    });
    if (!updated) {
      ctx.log()->warn("cannot take over the record of dead serve " + std::to_string(r.process.pid) + ": " +
                      updated.status().message());
      continue;
    }
    ctx.log()->info("taking over from serve process " + std::to_string(r.process.pid) + ", which is gone");
    return TakenOverServe{*updated, r.process};
  }
  return std::nullopt;
}

int adopt_clones(CommandContext& ctx, MemoryServer& server, const ProcessIdentity& previous) {
  std::set<pid_t> adopted;
  for (pid_t pid : server.recorded_clients()) {
    if (Status st = server.adopt(pid); st.ok()) {
      adopted.insert(pid);
    } else {
      ctx.log()->warn("not adopting VMM " + std::to_string(pid) + ": " + st.message());
    }
  }
  const ProcessIdentity self = ProcessIdentity::self();
  int clones = 0;
  for (const auto& r : check(ctx.state().list())) {
    if (r.type != VmType::clone || !r.serve || *r.serve != previous || !r.vmm || !adopted.count(r.vmm->pid)) {
      continue;
    }
    auto updated = ctx.state().update(r.id, [&](VmRecord& rec) {
      rec.serve = self;
      return ok_status();
    });
    if (updated) {
      ++clones;
      ctx.log()->info("adopted clone " + r.name + " (VMM " + std::to_string(r.vmm->pid) + ")");
    } else {
      ctx.log()->warn("adopted clone " + r.name + " but cannot update its record: " + updated.status().message());
    }
  }
  return clones;
}

}  // namespace fcvm::cli
