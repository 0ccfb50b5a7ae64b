// fcvm gc: cleans up after fcvm processes that are gone: clean_up_vm for each record whose
// process is dead. A record whose cleanup fails in any step stays (with a warning), so
// nothing is forgotten that still holds resources; the steps are idempotent, so the next
// gc retries them. Whole gc runs are serialised by a lock (a second gc waits, then finds
// nothing left to do), and each run also sweeps the temp files of state writers that were
// killed mid-write. Clones whose serve process died are stopped, and snapshot builds of
// dead processes are swept. With --cache, the startup snapshots of `podman run`
// (run/startup_cache.h) are dropped too: the next run of each container boots and takes a
// new one.
#include <signal.h>

#include <iostream>

#include "cli/command.h"
#include "cli/commands.h"
#include "cli/vm_cleanup.h"
#include "config/config.h"
#include "snapshot/snapshot_store.h"
#include "state/state_store.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

// Whether the serve process `serve` was its clones' page server (its record names a
// memory socket).
bool served_pages(const std::vector<VmRecord>& records, const ProcessIdentity& serve) {
  for (const auto& r : records) {
    if (r.type == VmType::serve && r.process == serve) return r.extra.contains("memory_socket");
  }
  return false;
}

int run_gc(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("Options");
  desc.add_options()("json", "print {\"removed\": [...], \"kept\": [...]} as JSON")(
      "cache", "also remove the startup snapshots of 'podman run' (marked cache in 'fcvm snapshot ls')");
  auto vm = parse_command_line(ctx, "gc [--json] [--cache]", desc, {}, args);
  const bool json = vm.count("json") > 0;

  ctx.require_trusted_data_dir();
  FileLock collecting = check(ctx.state().lock_collection());
  const int swept = check(ctx.state().sweep_temp_files());
  auto records = check(ctx.state().list());
  nlohmann::json removed = nlohmann::json::array();
  nlohmann::json kept = nlohmann::json::array();
  // Clones outlive their serve only if their own watchdog failed, or if the serve was their
  // page server (they wait for a new serve to adopt them) and nobody did: stop them (their
  // records are collected once their process has gone).
  for (const auto& r : records) {
    if (r.type == VmType::clone && r.serve && !r.serve->alive() && r.alive()) {
      ctx.log()->info("gc: stopping " + r.name + ", whose serve process is gone");
      // A VMM whose page server is gone hangs at its next fault and ignores SIGTERM.
      if (r.vmm && r.vmm->alive() && served_pages(records, *r.serve)) ::kill(r.vmm->pid, SIGKILL);
      ::kill(r.process.pid, SIGTERM);
    }
  }
  SnapshotStore snapshots(ctx.config().data_dir);
  snapshots.sweep_stale();
  if (vm.count("cache")) {
    // Runs restored from one keep its memory file open and have their own disks.
    for (const auto& s : snapshots.list()) {
      if (!s.manifest.is_cache()) continue;
      if (Status st = remove_snapshot(ctx, snapshots, s); !st.ok()) {
        kept.push_back({{"snapshot", s.manifest.tag}, {"reason", st.message()}});
        ctx.log()->warn("gc: keeping snapshot " + s.manifest.tag + ": " + st.message());
      } else {
        removed.push_back({{"snapshot", s.manifest.tag}});
        if (!json) std::cout << "removed startup snapshot " << s.manifest.tag << "\n";
      }
    }
  }
  for (const auto& r : records) {
    if (r.alive()) continue;
    VmCleanup outcome = clean_up_vm(ctx, r);
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
    std::cout << nlohmann::json{{"removed", removed}, {"kept", kept}, {"temp_files_removed", swept}}
                     .dump(2)
              << "\n";
  } else if (swept > 0) {
    std::cout << "removed " << swept << " stale temp file" << (swept == 1 ? "" : "s") << " in "
              << ctx.state().dir().string() << "\n";
  }
  if (!json && removed.empty() && kept.empty() && swept == 0) {
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
