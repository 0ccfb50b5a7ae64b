// fcvm config show: the effective configuration, after defaults < file < environment <
// flags, in the config file's own format (so it can be saved as a config file).
#include <iostream>

#include "cli/command.h"
#include "cli/commands.h"
#include "config/config.h"

namespace fcvm::cli {
namespace {

int run_config_show(CommandContext& ctx, const std::vector<std::string>& args) {
  boost::program_options::options_description desc("Options");
  parse_command_line(ctx, "config show", desc, {}, args);
  const Config& cfg = ctx.config();
  std::cout << cfg.to_json().dump(2) << "\n";
  if (!cfg.source.empty()) ctx.log()->info("config read from " + cfg.source.string());
  return 0;
}

}  // namespace

Command config_show_command() {
  return {{"config", "show"}, "print the effective configuration as JSON", run_config_show};
}

}  // namespace fcvm::cli
