// fcvm stats, top and events: what running VMs use, what runs in them, and what happens to
// them. stats: a table refreshed every second until interrupted (--no-stream: one sample),
// as podman stats; top: the guest's processes, as podman top; events: lifecycle events.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

// Decimal units with four significant digits, as podman prints sizes ("1.234MB").
std::string human_size(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1000 && unit + 1 < std::size(kUnits)) {
    value /= 1000;
    ++unit;
  }
  char out[32];
  std::snprintf(out, sizeof out, "%.4g%s", value, kUnits[unit]);
  return out;
}

std::string percent(double value) {
  char out[32];
  std::snprintf(out, sizeof out, "%.2f%%", value);
  return out;
}

void print_table(const std::vector<VmStats>& stats) {
  std::printf("%-12s  %-20s  %-8s  %-22s  %-8s  %-22s  %-22s  %s\n", "ID", "NAME", "CPU %", "MEM USAGE / LIMIT",
              "MEM %", "NET IO", "BLOCK IO", "PIDS");
  for (const auto& s : stats) {
    const std::string used = s.pss_bytes ? human_size(*s.pss_bytes) : "--";
    const std::string limit = s.memory_limit_bytes ? human_size(s.memory_limit_bytes) : "--";
    const std::string mem_pct = s.pss_bytes && s.memory_limit_bytes
                                    ? percent(100.0 * static_cast<double>(*s.pss_bytes) /
                                              static_cast<double>(s.memory_limit_bytes))
                                    : "--";
    std::printf("%-12s  %-20s  %-8s  %-22s  %-8s  %-22s  %-22s  %s\n", s.id.c_str(), s.name.c_str(),
                percent(s.cpu_percent).c_str(), (used + " / " + limit).c_str(), mem_pct.c_str(),
                (human_size(s.net_input_bytes) + " / " + human_size(s.net_output_bytes)).c_str(),
                (human_size(s.block_read_bytes) + " / " + human_size(s.block_write_bytes)).c_str(),
                s.pids ? std::to_string(*s.pids).c_str() : "--");
  }
  std::fflush(stdout);
}

}  // namespace

Command stats_command() {
  return {{"stats"}, "show running VMs' CPU, memory (PSS), network and block I/O, refreshed every second",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("stats options");
    desc.add_options()
        ("no-stream", "print one sample and exit")
        ("format", po::value<std::string>(), "json: a JSON array per sample instead of the table");
    po::options_description hidden;
    hidden.add_options()("names", po::value<std::vector<std::string>>());
    po::positional_options_description pos;
    pos.add("names", -1);
    auto vm = parse_command_line(ctx, "stats [--no-stream] [--format json] [NAME...]", desc, pos, args, hidden);
    const bool json = vm.count("format") > 0;
    if (json && vm["format"].as<std::string>() != "json") {
      throw CliError("--format takes json, not '" + vm["format"].as<std::string>() + "'", kUsageExit);
    }
    std::vector<VmRef> refs;
    if (vm.count("names")) {
      for (const auto& name : vm["names"].as<std::vector<std::string>>()) refs.push_back(VmRef::named(name));
    }
    const bool stream = vm.count("no-stream") == 0;
    const bool redraw = stream && !json && ::isatty(STDOUT_FILENO);
    // The first sample's CPU is over a short interval; later ones over the refresh period.
    for (auto sample = std::chrono::milliseconds(stream ? 1000 : 500);;) {
      const auto stats = check_engine(ctx.engine().stats(refs, sample));
      if (redraw) std::printf("\033[2J\033[H");
      if (json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& s : stats) out.push_back(to_json(s));
        std::cout << out.dump(stream ? -1 : 2) << std::endl;
      } else {
        print_table(stats);
      }
      if (!stream) return 0;
      if (!std::cout) return 0;  // the reader went away
    }
  }};
}

Command top_command() {
  return {{"top"}, "show the processes running in a VM's guest, as podman top does",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("top options");
    desc.add_options()("name", po::value<std::string>(), "VM name or id");
    po::positional_options_description pos;
    pos.add("name", 1);
    auto vm = parse_command_line(ctx, "top NAME", desc, pos, args);
    if (!vm.count("name")) throw CliError("top needs a VM name (see 'fcvm ls')", kUsageExit);
    std::cout << check_engine(ctx.engine().top(vm_ref(vm))) << std::flush;
    return 0;
  }};
}

Command events_command() {
  return {{"events"}, "print VMs' lifecycle events (create, start, died, remove) as they happen",
          [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("events options");
    desc.add_options()
        ("format", po::value<std::string>(), "json: one JSON object per line")
        ("until", po::value<unsigned>(), "stop after this many seconds");
    auto vm = parse_command_line(ctx, "events [--format json] [--until SECONDS]", desc, {}, args);
    const bool json = vm.count("format") > 0;
    if (json && vm["format"].as<std::string>() != "json") {
      throw CliError("--format takes json, not '" + vm["format"].as<std::string>() + "'", kUsageExit);
    }
    std::optional<std::chrono::steady_clock::time_point> until;
    if (vm.count("until")) until = std::chrono::steady_clock::now() + std::chrono::seconds(vm["until"].as<unsigned>());
    auto watcher = check_engine(ctx.engine().watch_events());
    while (!until || std::chrono::steady_clock::now() < *until) {
      for (const auto& e : check_engine(watcher.next(std::chrono::milliseconds(500)))) {
        if (json) {
          std::cout << to_json(e).dump() << std::endl;
        } else {
          std::cout << e.time << " " << to_string(e.type) << " " << to_string(e.kind) << " " << e.id
                    << " (image=" << e.image << ", name=" << e.name
                    << (e.exit_code ? ", exit_code=" + std::to_string(*e.exit_code) : std::string()) << ")"
                    << std::endl;
        }
      }
      if (!std::cout) return 0;
    }
    return 0;
  }};
}

}  // namespace fcvm::cli
