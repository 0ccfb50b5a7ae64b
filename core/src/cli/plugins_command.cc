// fcvm plugins: every plugin the loader found, whether it can run here, and every file it
// refused with the reason.
#include <algorithm>
#include <iostream>

#include "cli/command.h"
#include "cli/commands.h"
#include "fcvm/capabilities.h"
#include "plugin/plugin_registry.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

struct PluginRow {
  PluginInfo info;
  bool available = false;
  std::string reason;
  // What the created backend declares: {} for a kind that declares none (network, storage);
  // null and "" when the backend could not be created or asked.
  nlohmann::json capabilities;
  std::string capability_words;
};

// Creates the plugin's backend and asks it; a plugin that cannot be created is unavailable
// with the creation error as its reason, and its capabilities are unknown.
PluginRow probe_plugin(CommandContext& ctx, const PluginInfo& info) {
  PluginRow row;
  row.info = info;
  auto backend = ctx.engine().create_backend(info.name);
  if (!backend.ok()) {
    row.reason = backend.status().message();
    return row;
  }
  try {
    Probe probe = (*backend)->probe();
    row.available = probe.available;
    row.reason = std::move(probe.reason);
    auto caps = capabilities_of(**backend);
    row.capabilities = caps ? caps->fields : nlohmann::json::object();
    row.capability_words = caps ? caps->words : "";
  } catch (const std::exception& e) {
    row.reason = "its probe threw: " + std::string(e.what());
  }
  return row;
}

int run_plugins(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("Options");
  desc.add_options()("json", "print a JSON array: one object per plugin, one per refused file");
  auto vm = parse_command_line(ctx, "plugins [--json]", desc, {}, args);

  // Copied: creating a backend may add refusals, and the rows are printed afterwards.
  const std::vector<PluginInfo> found = ctx.engine().plugin_registry().plugins();
  std::vector<PluginRow> rows;
  for (const auto& info : found) rows.push_back(probe_plugin(ctx, info));
  const std::vector<PluginRefusal> refused = ctx.engine().plugin_registry().refusals();

  if (vm.count("json")) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : rows) {
      out.push_back({{"name", r.info.name},
                     {"kind", to_string(r.info.kind)},
                     {"version", r.info.version},
                     {"description", r.info.description},
                     {"file", r.info.file.string()},
                     {"available", r.available},
                     {"reason", r.reason},
                     {"capabilities", r.capabilities}});
    }
    for (const auto& r : refused) {
      out.push_back({{"file", r.file.string()}, {"refused", r.message}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  std::vector<std::vector<std::string>> table = {
      {"NAME", "KIND", "VERSION", "PROBE", "CAPABILITIES", "FILE", "REASON"}};
  for (const auto& r : rows) {
    table.push_back({r.info.name, to_string(r.info.kind), r.info.version,
                     r.available ? "available" : "unavailable",
                     r.capability_words.empty() ? "-" : r.capability_words,
                     r.info.file.empty() ? "(built-in)" : r.info.file.string(), r.reason});
  }
  print_table(table);
  if (!refused.empty()) std::cout << "\n";
  for (const auto& r : refused) std::cout << "refused: " << r.message << "\n";
  return 0;
}

}  // namespace

Command plugins_command() {
  return {{"plugins"}, "list backend plugins, whether each can run here, and refused files",
          run_plugins};
}

}  // namespace fcvm::cli
