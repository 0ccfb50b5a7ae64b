// fcvm ls: the state store's records of running processes (with -a, also of ended ones,
// which stay until 'fcvm rm' or 'fcvm gc', as podman's exited containers do).
#include <iostream>

#include "cli/command.h"
#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

int run_ls(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("Options");
  desc.add_options()("all,a", "also VMs whose process has ended (exited, failed, dead)")(
      "json", "print a JSON array of records, each with an \"alive\" field")(
      "pid", po::value<int>(), "only the record of this process")(
      "name", po::value<std::string>(), "only the record with this name");
  auto vm = parse_command_line(ctx, "ls [-a] [--json] [--pid N] [--name NAME]", desc, {}, args);

  ListFilter filter;
  filter.all = vm.count("all") > 0;
  if (vm.count("pid")) filter.pid = vm["pid"].as<int>();
  if (vm.count("name")) filter.name = vm["name"].as<std::string>();
  const auto shown = check_engine(ctx.engine().list(filter));

  if (vm.count("json")) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& v : shown) {
      nlohmann::json j = to_json(v.record);
      j["alive"] = v.alive;
      if (v.status == "paused") j["status"] = "paused";
      j.update(v.accounting);
      out.push_back(std::move(j));
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  std::vector<std::vector<std::string>> rows = {
      {"NAME", "ID", "TYPE", "STATUS", "PID", "IMAGE/SNAPSHOT", "CREATED"}};
  for (const auto& [r, alive, status, accounting] : shown) {
    // A clone depends on its serve process: show which.
    std::string source = r.image.empty() ? r.snapshot : r.image;
    if (r.serve) source += " (serve " + std::to_string(r.serve->pid) + ")";
    rows.push_back({r.name, r.id, to_string(r.type), status,
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
