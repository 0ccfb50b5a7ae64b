#include "cli/command.h"
#include "config/config.h"
#include "engine/engine.h"

namespace fcvm::cli {

CommandContext::CommandContext(GlobalOptions globals) : globals_(std::move(globals)) {}
CommandContext::~CommandContext() = default;

void CommandContext::merge_globals(const GlobalOptions& more) {
  if (more.config_file) globals_.config_file = more.config_file;
  if (more.data_dir) globals_.data_dir = more.data_dir;
  if (more.log_level) globals_.log_level = more.log_level;
  globals_.plugin_dirs.insert(globals_.plugin_dirs.end(), more.plugin_dirs.begin(),
                              more.plugin_dirs.end());
  globals_.plugin_choices.insert(globals_.plugin_choices.end(), more.plugin_choices.begin(),
                                 more.plugin_choices.end());
}

Engine& CommandContext::engine() {
  if (!engine_) {
    ConfigInputs inputs;
    inputs.config_file = globals_.config_file;
    inputs.data_dir = globals_.data_dir;
    inputs.plugin_dirs = globals_.plugin_dirs;
    inputs.plugin_choices = globals_.plugin_choices;
    inputs.log_level = globals_.log_level;
    inputs.env = process_environment();
    engine_ = check(Engine::open(inputs));
  }
  return *engine_;
}

}  // namespace fcvm::cli
