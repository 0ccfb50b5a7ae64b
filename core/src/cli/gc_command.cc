// fcvm gc: cleans up after fcvm processes that are gone. For each record whose process is
// dead: tear down its network lease and destroy its disks through the plugins that made
// them, remove its directory, then delete the record. A record whose cleanup fails in any
// step stays (with a warning), so nothing is forgotten that still holds resources; the
// steps are idempotent, so the next gc retries them. Clones whose serve process died are
// stopped, and snapshot builds of dead processes are swept.
#include <signal.h>

#include <iostream>

#include "cli/command.h"
#include "cli/commands.h"
#include "config/config.h"
#include "fcvm/network.h"
#include "fcvm/storage.h"
#include "plugin/plugin_registry.h"
#include "snapshot/snapshot_store.h"
#include "state/state_store.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

struct GcOutcome {
  bool removed = false;
  std::vector<std::string> cleaned;  // what was torn down, for the report
  std::string problem;               // why the record stays
};

// True when `dir` is strictly inside `root`: gc never deletes anything outside the data dir,
// whatever a (damaged or hand-edited) record says.
bool is_inside(const std::filesystem::path& dir, const std::filesystem::path& root) {
  if (!dir.is_absolute()) return false;
  const auto rel = dir.lexically_normal().lexically_relative(root.lexically_normal());
  return !rel.empty() && rel != "." && *rel.begin() != "..";
}

// The plugin that made a lease: the lease's own name, else the record's choice for `kind`.
std::string lease_plugin(const std::string& from_lease, const VmRecord& r, PluginKind kind) {
  if (!from_lease.empty()) return from_lease;
  auto it = r.plugins.find(kind);
  return it == r.plugins.end() ? std::string() : it->second;
}

template <class Backend>
Result<std::shared_ptr<Backend>> load_backend(CommandContext& ctx, const std::string& name,
                                              PluginKind kind) {
  if (name.empty()) {
    return error(Errc::not_found, std::string("the record names no ") + to_string(kind) +
                                      " plugin for its lease");
  }
  return ctx.plugins().create_as<Backend>(name, kind, ctx.plugin_context(name));
}

GcOutcome collect(CommandContext& ctx, const VmRecord& r) {
  GcOutcome out;
  if (r.network) {
    const std::string name = lease_plugin(r.network->plugin, r, PluginKind::network);
    auto backend = load_backend<NetworkBackend>(ctx, name, PluginKind::network);
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
    auto backend = load_backend<StorageBackend>(ctx, name, PluginKind::storage);
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
    if (!is_inside(r.vm_dir, ctx.config().data_dir)) {
      out.problem = "its directory " + r.vm_dir.string() + " is outside the data dir " +
                    ctx.config().data_dir.string() + "; remove it by hand, then run gc again";
      return out;
    }
    const bool existed = std::filesystem::exists(r.vm_dir, ec);
    std::filesystem::remove_all(r.vm_dir, ec);
    if (ec) {
      out.problem = "remove " + r.vm_dir.string() + ": " + ec.message();
      return out;
    }
    if (existed) out.cleaned.push_back(r.vm_dir.string());
  }
  Status st = ctx.state().remove(r.id);
  if (!st.ok() && st.code() != Errc::not_found) {  // not_found: a concurrent gc got there
    out.problem = "remove record: " + st.message();
    return out;
  }
  out.removed = true;
  return out;
}

int run_gc(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("Options");
  desc.add_options()("json", "print {\"removed\": [...], \"kept\": [...]} as JSON");
  auto vm = parse_command_line(ctx, "gc [--json]", desc, {}, args);
  const bool json = vm.count("json") > 0;

  auto records = check(ctx.state().list());
  nlohmann::json removed = nlohmann::json::array();
  nlohmann::json kept = nlohmann::json::array();
  // Clones outlive their serve only if their own watchdog failed: stop them (their
  // records are collected once their process has gone).
  for (const auto& r : records) {
    if (r.type == VmType::clone && r.serve && !r.serve->alive() && r.alive()) {
      ctx.log()->info("gc: stopping " + r.name + ", whose serve process is gone");
      ::kill(r.process.pid, SIGTERM);
    }
  }
  SnapshotStore(ctx.config().data_dir).sweep_stale();
  for (const auto& r : records) {
    if (r.alive()) continue;
    GcOutcome outcome = collect(ctx, r);
    const std::string who = r.name + " (" + r.id + ")";
    if (outcome.removed) {
      removed.push_back({{"id", r.id}, {"name", r.name}, {"cleaned", outcome.cleaned}});
      if (!json) {
        std::string what;
        for (const auto& c : outcome.cleaned) what += (what.empty() ? "" : ", ") + c;
        std::cout << "removed " << who << (what.empty() ? "" : ": " + what) << "\n";
      }
    } else {
      kept.push_back({{"id", r.id}, {"name", r.name}, {"reason", outcome.problem}});
      ctx.log()->warn("gc: keeping " + who + ": " + outcome.problem);
    }
  }
  if (json) {
    std::cout << nlohmann::json{{"removed", removed}, {"kept", kept}}.dump(2) << "\n";
  } else if (removed.empty() && kept.empty()) {
    std::cout << "nothing to collect\n";
  }
  // Non-zero when something dead could not be cleaned, so scripts notice.
  return kept.empty() ? 0 : 1;
}

}  // namespace

Command gc_command() {
  return {{"gc"},
          "clean up after dead fcvm processes: their records, networks, disks and dirs",
          run_gc};
}

}  // namespace fcvm::cli
