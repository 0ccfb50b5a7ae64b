// What every fcvm command gets: the global options and lazily built core services.
#pragma once

#include <boost/program_options.hpp>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "fcvm/log.h"
#include "fcvm/plugin.h"
#include "fcvm/result.h"

namespace fcvm::cli {

// A failure meant for the user: printed as "fcvm: <message>", exit with `exit_code`.
class CliError : public std::runtime_error {
 public:
  explicit CliError(const std::string& message, int exit_code = 1)
      : std::runtime_error(message), exit_code_(exit_code) {}
  explicit CliError(const Status& status, int exit_code = 1)
      : CliError(status.message(), exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// Exit code for wrong usage (unknown option, missing argument).
inline constexpr int kUsageExit = 2;
// The same, and any other error of fcvm's own, under `fcvm podman` and `fcvm exec`, whose
// exit code is otherwise the container's: 125, podman's code for an error of its own.
inline constexpr int kPodmanErrorExit = 125;

// Throws CliError when `status` failed.
inline void check(const Status& status, int exit_code = 1) {
  if (!status.ok()) throw CliError(status, exit_code);
}
template <class T>
T check(Result<T> result, int exit_code = 1) {
  if (!result.ok()) throw CliError(result.status(), exit_code);
  return std::move(result).value();
}

// Options accepted by every command, before or after the command name.
struct GlobalOptions {
  std::optional<std::filesystem::path> config_file;  // --config
  std::optional<std::filesystem::path> data_dir;     // --data-dir
  std::vector<std::filesystem::path> plugin_dirs;    // --plugin-dir (repeatable)
  std::vector<std::string> plugin_choices;           // --plugin kind=name, and the shorthands
  std::optional<std::string> log_level;              // --log-level
};

// The options_description for GlobalOptions, writing into `out`.
boost::program_options::options_description global_options(GlobalOptions& out);

// `desc` plus the global options it does not define itself.
boost::program_options::options_description with_global_options(
    const boost::program_options::options_description& desc, GlobalOptions& out);

// Per-invocation services: the core API, opened on first use. Owned by the dispatcher;
// commands borrow it.
class CommandContext {
 public:
  explicit CommandContext(GlobalOptions globals);
  ~CommandContext();

  const GlobalOptions& globals() const { return globals_; }
  // Adds global options given after the command name. Precondition: engine not opened yet.
  void merge_globals(const GlobalOptions& more);

  // The core API with the effective configuration (file < environment < flags). Throws
  // CliError naming the bad key on an invalid config.
  Engine& engine();
  const Config& config() { return engine().config(); }
  LoggerPtr log() { return engine().log(); }

 private:
  GlobalOptions globals_;
  std::unique_ptr<Engine> engine_;
};

// Exit code for an engine error: kUsageExit when the caller's input was wrong, else
// `otherwise`.
inline int exit_code_for(const Status& status, int otherwise) {
  return status.code() == Errc::invalid_argument ? kUsageExit : otherwise;
}
// The VM that parsed options "name" and "pid" name (the engine refuses both or neither).
inline VmRef vm_ref(const boost::program_options::variables_map& options) {
  VmRef ref;
  if (options.count("name")) ref.name_or_id = options["name"].as<std::string>();
  if (options.count("pid")) ref.pid = options["pid"].as<int>();
  return ref;
}

// check() for engine calls: invalid input exits kUsageExit, other failures `otherwise`.
inline void check_engine(const Status& status, int otherwise = 1) {
  if (!status.ok()) throw CliError(status, exit_code_for(status, otherwise));
}
template <class T>
T check_engine(Result<T> result, int otherwise = 1) {
  if (!result.ok()) throw CliError(result.status(), exit_code_for(result.status(), otherwise));
  return std::move(result).value();
}

struct Command {
  std::vector<std::string> path;  // {"setup", "preflight"}
  std::string summary;            // one line for `fcvm --help`
  // Runs the command with the arguments after its path (global options already removed
  // only when they came before the path; the command's parser accepts them too).
  std::function<int(CommandContext&, const std::vector<std::string>& args)> run;
};

// Prints `rows` as columns aligned to their widest cell, two spaces apart, with no trailing
// spaces (the tables of ls and plugins).
void print_table(const std::vector<std::vector<std::string>>& rows);

// Every command fcvm has, in help order. Only commands that work are listed.
const std::vector<Command>& command_table();

// Parses `args` with `desc` plus the global options (which update ctx's globals before any
// service is built). `positional` names the positional arguments in order; the last may
// repeat (max -1). `--help` prints usage and exits 0. Wrong usage throws CliError (exit 2).
boost::program_options::variables_map parse_command_line(
    CommandContext& ctx, const std::string& usage, boost::program_options::options_description desc,
    const boost::program_options::positional_options_description& positional,
    const std::vector<std::string>& args,
    const boost::program_options::options_description& hidden = {});

// For commands that end in a command line of their own (`podman run IMAGE CMD ARGS...`,
// `exec NAME [--] CMD ARGS...`): parses the options before the first positional argument,
// stores that argument as `target`, and returns everything after it untouched (a leading
// "--" dropped).
std::pair<boost::program_options::variables_map, std::vector<std::string>> parse_until_target(
    CommandContext& ctx, const std::string& usage, const boost::program_options::options_description& desc,
    const char* target, const std::vector<std::string>& args);

// Splits `args` at the first positional token for commands that pass the rest through
// untouched (`podman run IMAGE CMD ARGS...`, `exec NAME -- CMD`): returns the index of that
// token, or args.size() when there is none. Options taking a value skip their value.
size_t first_positional(const boost::program_options::options_description& desc,
                        const std::vector<std::string>& args);

}  // namespace fcvm::cli
