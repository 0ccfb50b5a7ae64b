// fcvm snapshot create|ls|rm|serve|run: snapshots of running VMs and their clones.
#include <unistd.h>

#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

int run_create(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("snapshot create options");
  desc.add_options()("pid", po::value<int>(), "the VM's fcvm process")(
      "tag", po::value<std::string>(), "the snapshot's name (default: the VM's name)")(
      "disk-only", "snapshot the disks alone (clones cold-boot)");
  po::positional_options_description pos;
  pos.add("name", 1);
  po::options_description hidden;
  hidden.add_options()("name", po::value<std::string>());
  auto vm = parse_command_line(ctx, "snapshot create NAME|--pid N [--tag TAG] [--disk-only]", desc,
                               pos, args, hidden);
  std::optional<std::string> tag;
  if (vm.count("tag")) tag = vm["tag"].as<std::string>();
  const auto created = check_engine(ctx.engine().snapshot_create(vm_ref(vm), tag, vm.count("disk-only") > 0));
  std::cout << created.tag << "\n";
  if (created.pause_ms) {
    ctx.log()->info("snapshot " + created.tag + ": the VM was paused " + std::to_string(*created.pause_ms) + " ms");
  }
  return 0;
}

int run_ls(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("snapshot ls options");
  desc.add_options()("json", "print a JSON array");
  auto vm = parse_command_line(ctx, "snapshot ls [--json]", desc, {}, args);
  const auto snapshots = check_engine(ctx.engine().snapshots());
  if (vm.count("json")) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& v : snapshots) {
      auto j = to_json(v.snapshot.manifest);
      j["dir"] = v.snapshot.dir.string();
      j["serve_pids"] = v.serve_pids;
      j["disk"] = v.disk;
      j["disk_bytes"] = j["disk"]["allocated_bytes"];
      j["serves"] = v.serves;
      out.push_back(std::move(j));
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "TAG\tSOURCE\tIMAGE\tKIND\tPAUSE_MS\tSERVES\tCREATED\n";
  for (const auto& v : snapshots) {
    const SnapshotManifest& m = v.snapshot.manifest;
    std::string pids;
    for (int p : v.serve_pids) pids += (pids.empty() ? "" : ",") + std::to_string(p);
    std::cout << m.tag << "\t" << m.source_name << "\t" << m.image << "\t"
              << (m.disk_only ? "disk" : m.cache_healthy ? "cache(healthy)" : m.is_cache() ? "cache" : "full")
              << "\t" << m.pause_ms << "\t" << (pids.empty() ? "-" : pids) << "\t" << m.created << "\n";
  }
  return 0;
}

int run_rm(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("snapshot rm options");
  desc.add_options()("force", "remove even while a serve process uses it");
  po::positional_options_description pos;
  pos.add("tag", 1);
  po::options_description hidden;
  hidden.add_options()("tag", po::value<std::string>());
  auto vm = parse_command_line(ctx, "snapshot rm TAG [--force]", desc, pos, args, hidden);
  if (!vm.count("tag")) throw CliError("snapshot rm needs a tag (see 'fcvm snapshot ls')", kUsageExit);
  const auto tag = vm["tag"].as<std::string>();
  check_engine(ctx.engine().snapshot_remove(tag, vm.count("force") > 0));
  return 0;
}

int run_serve(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("snapshot serve options");
  desc.add_options()("name", po::value<std::string>(), "name of the serve record")(
      "prefetch", po::value<std::string>()->default_value("on"),
      "memory-uffd: push the pages the first clone touched to later clones before they fault (on|off)");
  po::positional_options_description pos;
  pos.add("tag", 1);
  po::options_description hidden;
  hidden.add_options()("tag", po::value<std::string>());
  auto vm = parse_command_line(ctx, "snapshot serve TAG [--name NAME] [--memory file|memory-uffd] [--prefetch on|off]",
                               desc, pos, args, hidden);
  if (!vm.count("tag")) throw CliError("snapshot serve needs a tag (see 'fcvm snapshot ls')", kUsageExit);
  const auto prefetch = vm["prefetch"].as<std::string>();
  if (prefetch != "on" && prefetch != "off") throw CliError("--prefetch takes on or off, not '" + prefetch + "'", kUsageExit);
  ServeRequest request;
  request.tag = vm["tag"].as<std::string>();
  if (vm.count("name")) request.name = vm["name"].as<std::string>();
  request.prefetch = prefetch == "on";
  check_engine(ctx.engine().serve(request, [&](const std::filesystem::path& socket) {
    std::cout << "serving snapshot " << request.tag << ": pid " << ::getpid() << ", socket "
              << (socket.empty() ? std::string("none (file memory: clones map the image)") : socket.string())
              << "\n"
              << std::flush;
  }));
  return 0;
}

int run_clone(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("snapshot run options");
  desc.add_options()
      ("pid", po::value<int>(), "the serve process to clone from")
      ("snapshot", po::value<std::string>(), "clone this snapshot without a serve process")
      ("name", po::value<std::string>(), "name of the clone")
      ("publish,p", po::value<std::vector<std::string>>()->composing(), "publish a port: [HOST_IP:]HOST_PORT:GUEST_PORT")
      ("detach,d", "run in the background and print the clone's name")
      ("count", po::value<unsigned>()->default_value(1), "with --detach: start this many clones (names NAME-1, NAME-2, ...)")
      ("kernel", po::value<std::filesystem::path>(), "disk-only snapshots: boot this guest kernel instead of the one 'fcvm setup' built")
      ("exec", "run the command after the options in a new clone, print its output, exit with its code, remove the clone");
  auto [vm, command] = parse_until_target(ctx, "snapshot run --pid SERVE_PID|--snapshot TAG [OPTIONS] [--exec COMMAND [ARG...]]", desc, "cmd", args);
  if (vm.count("cmd")) command.insert(command.begin(), vm["cmd"].as<std::string>());
  const bool exec = vm.count("exec") > 0;
  if (exec && command.empty()) throw CliError("--exec needs a command", kUsageExit);
  if (!exec && !command.empty()) throw CliError("a clone continues its snapshot's container; to run a command in it, use --exec", kUsageExit);

  CloneRequest request;
  if (vm.count("pid")) request.serve_pid = vm["pid"].as<int>();
  if (vm.count("snapshot")) request.snapshot = vm["snapshot"].as<std::string>();
  if (vm.count("name")) request.name = vm["name"].as<std::string>();
  if (vm.count("publish")) {
    for (const auto& p : vm["publish"].as<std::vector<std::string>>()) {
      request.ports.push_back(check(parse_port_mapping(p), kUsageExit));
    }
  }
  request.detach = vm.count("detach") > 0;
  request.count = vm["count"].as<unsigned>();
  if (vm.count("kernel")) request.kernel = vm["kernel"].as<std::filesystem::path>();
  if (exec) {
    request.exec = command;
    request.exec_output = [](bool is_stderr, std::string_view bytes) {
      auto& out = is_stderr ? std::cerr : std::cout;
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      out.flush();
    };
  }
  const auto outcome = check_engine(ctx.engine().clone(request), kPodmanErrorExit);
  if (exec || !request.detach) return outcome.exit_code;
  for (const auto& name : outcome.names) std::cout << name << "\n";
  return 0;
}

}  // namespace

Command snapshot_create_command() {
  return {{"snapshot", "create"}, "snapshot a running VM (memory, VMM state and disks)", run_create};
}
Command snapshot_ls_command() { return {{"snapshot", "ls"}, "list snapshots", run_ls}; }
Command snapshot_rm_command() {
  return {{"snapshot", "rm"}, "remove a snapshot (running clones keep working)", run_rm};
}
Command snapshot_serve_command() {
  return {{"snapshot", "serve"}, "serve a snapshot to clones; stops them when it exits", run_serve};
}
Command snapshot_run_command() {
  return {{"snapshot", "run"}, "start a clone of a snapshot", run_clone};
}

}  // namespace fcvm::cli
