#include "cli/cli.h"

#include <iostream>

#include "cli/command.h"
#include "config/config.h"
#include "log/logging.h"
#include "engine/process_title.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

void print_help(std::ostream& out, const std::vector<std::string>& prefix) {
  GlobalOptions unused;
  out << "Usage: fcvm [GLOBAL OPTIONS] COMMAND [ARGS...]\n\n"
         "Runs OCI containers in microVMs; snapshots and clones running VMs.\n\nCommands:\n";
  for (const auto& cmd : command_table()) {
    if (!std::equal(prefix.begin(), prefix.end(), cmd.path.begin(),
                    cmd.path.begin() + static_cast<long>(std::min(prefix.size(), cmd.path.size()))))
      continue;
    std::string name;
    for (const auto& p : cmd.path) name += (name.empty() ? "" : " ") + p;
    out << "  " << name << std::string(name.size() < 22 ? 22 - name.size() : 1, ' ')
        << cmd.summary << "\n";
  }
  out << "\n" << global_options(unused)
      << "\nRun 'fcvm COMMAND --help' for a command's options.\n";
}

}  // namespace

po::options_description global_options(GlobalOptions& out) {
  po::options_description desc("Global options");
  auto choice = [&out](const char* kind) {
    return po::value<std::string>()->notifier(
        [&out, kind](const std::string& name) { out.plugin_choices.push_back(std::string(kind) + "=" + name); });
  };
  desc.add_options()
      ("config", po::value<std::filesystem::path>()->notifier([&out](const auto& p) { out.config_file = p; }),
       "config file (default: $FCVM_CONFIG, else /etc/fcvm/config.json)")
      ("data-dir", po::value<std::filesystem::path>()->notifier([&out](const auto& p) { out.data_dir = p; }),
       "state, images, snapshots (default: $FCVM_DATA_DIR, else /var/lib/fcvm)")
      ("plugin-dir", po::value<std::vector<std::filesystem::path>>()->composing()->notifier(
           [&out](const auto& v) { out.plugin_dirs.insert(out.plugin_dirs.end(), v.begin(), v.end()); }),
       "extra plugin directory (repeatable; searched first)")
      ("plugin", po::value<std::vector<std::string>>()->composing()->notifier(
           [&out](const auto& v) { out.plugin_choices.insert(out.plugin_choices.end(), v.begin(), v.end()); }),
       "choose a backend: KIND=NAME, e.g. vmm=vmm-qemu (repeatable)")
      ("vmm", choice("vmm"), "shorthand for --plugin vmm=NAME")
      ("network", choice("network"), "shorthand for --plugin network=NAME")
      ("storage", choice("storage"), "shorthand for --plugin storage=NAME")
      ("memory", choice("memory"), "shorthand for --plugin memory=NAME")
      ("log-level", po::value<std::string>()->notifier([&out](const std::string& l) { out.log_level = l; }),
       "trace|debug|info|warning|error (default: $FCVM_LOG, else warning)");
  return desc;
}

po::options_description with_global_options(const po::options_description& desc,
                                            GlobalOptions& out) {
  po::options_description all;
  all.add(desc);
  // A command's own option wins over a global one of the same name: in `podman run`,
  // --memory is the guest's memory, as in podman (--plugin memory=NAME picks the backend).
  po::options_description globals("Global options");
  const auto all_globals = global_options(out);
  for (const auto& opt : all_globals.options()) {
    if (!desc.find_nothrow(opt->long_name(), false)) globals.add(opt);
  }
  all.add(globals);
  return all;
}

size_t first_positional(const po::options_description& desc, const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") return i + 1 < args.size() ? i + 1 : args.size();
    if (a.size() < 2 || a[0] != '-') return i;
    if (a.find('=') != std::string::npos) continue;
    const bool is_long = a[1] == '-';
    // Boost keys short options by their dashed form ("-u").
    const std::string name = is_long ? a.substr(2) : a.substr(0, 2);
    const auto* opt = desc.find_nothrow(name, false, false, false);
    // A short option with its value attached ("-eK=V") takes no further token.
    if (opt && opt->semantic()->max_tokens() > 0 && (is_long || a.size() == 2)) ++i;
  }
  return args.size();
}

po::variables_map parse_command_line(CommandContext& ctx, const std::string& usage,
                                     po::options_description desc,
                                     const po::positional_options_description& positional,
                                     const std::vector<std::string>& args,
                                     const po::options_description& hidden) {
  GlobalOptions extra;
  auto full = with_global_options(desc, extra);
  full.add_options()("help,h", "show this help");
  po::options_description parsed;
  parsed.add(full).add(hidden);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(parsed).positional(positional).run(), vm);
    if (vm.count("help")) {
      std::cout << "Usage: " << usage << "\n\n" << full;
      std::exit(0);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw CliError(std::string(e.what()) + " (see 'fcvm " + usage.substr(0, usage.find(' ')) +
                       " --help')",
                   kUsageExit);
  }
  ctx.merge_globals(extra);
  return vm;
}

std::pair<po::variables_map, std::vector<std::string>> parse_until_target(
    CommandContext& ctx, const std::string& usage, const po::options_description& desc,
    const char* target, const std::vector<std::string>& args) {
  po::options_description hidden;
  hidden.add_options()(target, po::value<std::string>());
  po::options_description all;
  all.add(desc).add(hidden);
  GlobalOptions scratch;
  const size_t at = first_positional(with_global_options(all, scratch), args);
  const auto split = args.begin() + static_cast<long>(std::min(at + 1, args.size()));
  po::positional_options_description pos;
  pos.add(target, 1);
  auto vm = parse_command_line(ctx, usage, desc, pos, {args.begin(), split}, hidden);
  std::vector<std::string> rest(split, args.end());
  if (!rest.empty() && rest.front() == "--") rest.erase(rest.begin());
  return {std::move(vm), std::move(rest)};
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  remember_process_args(argc, argv);
  try {
    GlobalOptions globals;
    auto gdesc = global_options(globals);
    gdesc.add_options()("help,h", "show help")("version", "print the version");
    const size_t split = first_positional(gdesc, args);
    std::vector<std::string> leading(args.begin(), args.begin() + static_cast<long>(split));
    std::vector<std::string> rest(args.begin() + static_cast<long>(split), args.end());
    po::variables_map vm;
    try {
      po::store(po::command_line_parser(leading).options(gdesc).run(), vm);
      po::notify(vm);
    } catch (const po::error& e) {
      throw CliError(std::string(e.what()) + " (see 'fcvm --help')", kUsageExit);
    }
    if (vm.count("version")) {
      std::cout << "fcvm " << FCVM_VERSION << "\n";
      return 0;
    }
    if (vm.count("help") || rest.empty()) {
      print_help(vm.count("help") ? std::cout : std::cerr, {});
      return vm.count("help") ? 0 : kUsageExit;
    }

    const Command* best = nullptr;
    for (const auto& cmd : command_table()) {
      if (cmd.path.size() <= rest.size() &&
          std::equal(cmd.path.begin(), cmd.path.end(), rest.begin()) &&
          (!best || cmd.path.size() > best->path.size())) {
        best = &cmd;
      }
    }
    if (!best) {
      const bool is_group = std::any_of(command_table().begin(), command_table().end(),
                                        [&](const Command& c) { return c.path.front() == rest.front(); });
      if (is_group) {
        print_help(std::cerr, {rest.front()});
        if (rest.size() == 1 || rest[1] == "--help" || rest[1] == "-h") return rest.size() == 1 ? kUsageExit : 0;
        throw CliError("unknown command 'fcvm " + rest[0] + " " + rest[1] + "'", kUsageExit);
      }
      throw CliError("unknown command '" + rest.front() + "' (see 'fcvm --help')", kUsageExit);
    }
    CommandContext ctx(std::move(globals));
    try {
      return best->run(ctx, {rest.begin() + static_cast<long>(best->path.size()), rest.end()});
    } catch (const CliError& e) {
      // Where the exit code is the container's (podman run, exec), fcvm's own errors exit
      // 125 as podman's do (a bad flag or value, no such VM), leaving 1-124 to the container.
      const bool container_code = best->path.front() == "podman" || best->path.front() == "exec";
      if (container_code && (e.exit_code() == kUsageExit || e.exit_code() == 1)) {
        throw CliError(e.what(), kPodmanErrorExit);
      }
      throw;
    }
  } catch (const CliError& e) {
    // Errors may quote the guest (its messages, its console): never raw control bytes.
    std::cerr << "fcvm: " << escape_control_chars(e.what()) << "\n";
    return e.exit_code();
  } catch (const nlohmann::json::exception& e) {
    // A JSON document fcvm read had an unexpected shape: say so without nlohmann's codes.
    std::cerr << "fcvm: unexpected JSON content: " << json_error_text(e) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "fcvm: " << escape_control_chars(e.what()) << "\n";
    return 1;
  }
}

}  // namespace fcvm::cli
