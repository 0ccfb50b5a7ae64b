#include "cli/command.h"
#include "config/config.h"
#include "log/logging.h"
#include "plugin/plugin_registry.h"
#include "state/state_store.h"
#include "state/trusted_data_dir.h"

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

const Config& CommandContext::config() {
  if (!config_) {
    for (const auto& dir : globals_.plugin_dirs) {
      std::error_code ec;
      if (!std::filesystem::is_directory(dir, ec)) {
        throw CliError("--plugin-dir " + dir.string() +
                       ": no such directory; pass a directory that holds fcvm plugins "
                       "(fcvm-*.so)");
      }
    }
    ConfigInputs inputs;
    inputs.config_file = globals_.config_file;
    inputs.data_dir = globals_.data_dir;
    inputs.plugin_dirs = globals_.plugin_dirs;
    inputs.plugin_choices = globals_.plugin_choices;
    inputs.log_level = globals_.log_level;
    inputs.env = process_environment();
    config_ = std::make_unique<Config>(check(Config::load(inputs)));
    // Logging follows the config; the sink is installed once per process.
    init_logging(config_->log_level);
    if (!config_->source.empty()) root_logger()->debug("config: read " + config_->source.string());
  }
  return *config_;
}

LoggerPtr CommandContext::log() {
  if (!log_) {
    config();
    log_ = root_logger();
  }
  return log_;
}

StateStore& CommandContext::state() {
  if (!state_) state_ = std::make_unique<StateStore>(config().data_dir, log());
  return *state_;
}

void CommandContext::require_trusted_data_dir() { check(check_trusted_data_dir(config().data_dir)); }

}  // namespace fcvm::cli
