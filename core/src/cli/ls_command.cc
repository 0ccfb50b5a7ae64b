// fcvm ls: the state store's records of running processes (with -a, also of ended ones,
// which stay until 'fcvm rm' or 'fcvm gc', as podman's exited containers do).
#include <iostream>

#include "cli/command.h"
#include "cli/commands.h"
#include "cli/vm_accounting.h"
#include "snapshot/memory_stats_file.h"
#include "state/state_store.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

// What STATUS shows: the recorded status while the process runs; for a dead process the
// exit it recorded, or "dead" when it died without recording one (crashed, killed).
std::string shown_status(const VmRecord& r, bool alive) {
  // Paused vCPUs show as podman shows a paused container.
  if (alive && r.status == VmStatus::running && r.paused) return "paused";
  // A running VM with a health check shows its health as podman does: "running (healthy)".
  if (alive && r.status == VmStatus::running && r.health) {
    return std::string(to_string(r.status)) + " (" + to_string(r.health->status) + ")";
  }
  if (alive) return to_string(r.status);
  if (r.status == VmStatus::exited) {
    return r.exit_code ? "exited (" + std::to_string(*r.exit_code) + ")" : "exited";
  }
  if (r.status == VmStatus::failed) return r.error.empty() ? "failed" : "failed: " + r.error;
  return "dead";
}

// Memory accounting of a live record: PSS of its VMM (a serve: of itself, whose page cache
// holds the image), and for a clone served by a page server, that server's counters of its
// VMM. (A serve's counters of all its clients are in `snapshot ls --json`: listing them here
// too would count every fault twice in a sum over this output.)
void add_accounting(nlohmann::json& j, const VmRecord& r, bool alive, const std::vector<VmRecord>& all) {
  j["pss"] = nullptr;
  if (!alive) return;
  if (r.type == VmType::serve) {
    if (auto pss = process_pss(r.process.pid)) j["pss"] = *pss;
    return;
  }
  if (!r.vmm || !r.vmm->alive()) return;
  if (auto pss = process_pss(r.vmm->pid)) j["pss"] = *pss;
  if (!r.serve) return;
  j["memory_server"] = nullptr;
  for (const auto& s : all) {
    if (s.type != VmType::serve || s.process != *r.serve || s.vm_dir.empty()) continue;
    if (auto c = MemoryStatsFile::client(s.vm_dir, r.vmm->pid)) j["memory_server"] = *c;
  }
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

int run_ls(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("Options");
  desc.add_options()("all,a", "also VMs whose process has ended (exited, failed, dead)")(
      "json", "print a JSON array of records, each with an \"alive\" field")(
      "pid", po::value<int>(), "only the record of this process")(
      "name", po::value<std::string>(), "only the record with this name");
  auto vm = parse_command_line(ctx, "ls [-a] [--json] [--pid N] [--name NAME]", desc, {}, args);

  auto records = check(ctx.state().list());
  std::vector<std::pair<VmRecord, bool>> shown;
  for (const auto& r : records) {
    if (vm.count("pid") && r.process.pid != vm["pid"].as<int>()) continue;
    if (vm.count("name") && r.name != vm["name"].as<std::string>()) continue;
    const bool alive = r.alive();
    if (!alive && !vm.count("all")) continue;
    shown.emplace_back(r, alive);
  }

  if (vm.count("json")) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [r, alive] : shown) {
      nlohmann::json j = to_json(r);
      j["alive"] = alive;
      if (alive && r.status == VmStatus::running && r.paused) j["status"] = "paused";
      add_accounting(j, r, alive, records);
      out.push_back(std::move(j));
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  std::vector<std::vector<std::string>> rows = {
      {"NAME", "ID", "TYPE", "STATUS", "PID", "IMAGE/SNAPSHOT", "CREATED"}};
  for (const auto& [r, alive] : shown) {
    // A clone depends on its serve process: show which.
    std::string source = r.image.empty() ? r.snapshot : r.image;
    if (r.serve) source += " (serve " + std::to_string(r.serve->pid) + ")";
    rows.push_back({r.name, r.id, to_string(r.type), shown_status(r, alive),
                    std::to_string(r.process.pid), source, r.created});
  }
  print_table(rows);
  return 0;
}

}  // namespace

Command ls_command() {
  return {{"ls"}, "list running VMs, snapshot servers and clones (-a: ended ones too)",
          run_ls};
}

}  // namespace fcvm::cli
