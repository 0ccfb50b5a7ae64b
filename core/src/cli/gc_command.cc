// fcvm gc: cleans up after fcvm processes that are gone: clean_up_vm for each record whose
// process is dead. A record whose cleanup fails in any step stays (with a warning), so
// nothing is forgotten that still holds resources; the steps are idempotent, so the next
// gc retries them. Whole gc runs are serialised by a lock (a second gc waits, then finds
// nothing left to do), and each run also sweeps the temp files of state writers that were
// killed mid-write. Clones whose serve process died are stopped, and snapshot builds of
// dead processes are swept. With --cache, the startup snapshots of `podman run`
// (session/startup_cache.h) are dropped too: the next run of each container boots and takes a
// new one.
#include <iostream>

#include "cli/command.h"
#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

int run_gc(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("Options");
  desc.add_options()("json", "print {\"removed\": [...], \"kept\": [...]} as JSON")(
      "cache", "also remove the startup snapshots of 'podman run' (marked cache in 'fcvm snapshot ls')");
  auto vm = parse_command_line(ctx, "gc [--json] [--cache]", desc, {}, args);
  const bool json = vm.count("json") > 0;

  GcOptions options;
  options.cache = vm.count("cache") > 0;
  const GcReport report = check_engine(ctx.engine().gc(options));
  const auto& removed = report.removed;
  const auto& kept = report.kept;
  const int swept = report.temp_files_removed;
  if (!json) {
    for (const auto& r : removed) {
      if (r.contains("snapshot")) {
        std::cout << "removed startup snapshot " << r["snapshot"].get<std::string>() << "\n";
        continue;
      }
      std::string what;
      for (const auto& c : r["cleaned"]) what += (what.empty() ? "" : ", ") + c.get<std::string>();
      std::cout << "removed " << r["name"].get<std::string>() << " (" << r["id"].get<std::string>() << ")"
                << (what.empty() ? "" : ": " + what) << "\n";
    }
  }
  if (json) {
    std::cout << nlohmann::json{{"removed", removed}, {"kept", kept}, {"temp_files_removed", swept}}
                     .dump(2)
              << "\n";
  } else if (swept > 0) {
    std::cout << "removed " << swept << " stale temp file" << (swept == 1 ? "" : "s") << " in "
              << report.state_dir.string() << "\n";
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
