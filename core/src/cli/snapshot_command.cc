// fcvm snapshot create|ls|rm|serve|run: snapshots of running VMs and their clones.
#include <unistd.h>

#include <chrono>
#include <iostream>

#include "cli/commands.h"
#include "cli/vm_accounting.h"
#include "cli/vm_cleanup.h"
#include "cli/vm_target.h"
#include "config/config.h"
#include "fcvm/memory.h"
#include "run/container_request.h"
#include "run/container_run.h"
#include "run/container_supervisor.h"
#include "session/clone_origin.h"
#include "snapshot/memory_stats_file.h"
#include "snapshot/serve_session.h"
#include "snapshot/snapshot_store.h"
#include "state/state_store.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

constexpr auto kStopWait = std::chrono::seconds(60);
// A snapshot copies the guest's memory and disks: minutes at worst, never forever.
constexpr auto kSnapshotWait = std::chrono::minutes(10);

// Runs `args` in the VM's container through its control socket, its output to ours.
// Returns the command's exit code.
int exec_in_vm(const VmRecord& record, const std::vector<std::string>& args) {
  auto client = check(connect_control(record), kRunFailedExit);
  control::ExecRequest request;
  request.args = args;
  check(client.send_request(request), kRunFailedExit);
  bool refused = false;
  while (!client.closed()) {
    for (const auto& m : check(client.receive(), kRunFailedExit)) {
      switch (m.type) {
        case control::MessageType::kStdout:
          std::cout << m.payload << std::flush;
          break;
        case control::MessageType::kStderr:
          std::cerr << m.payload << std::flush;
          break;
        case control::MessageType::kReply: {
          auto reply = check(control::parse_reply(m.payload), kRunFailedExit);
          if (!reply.ok()) {
            std::cerr << "fcvm: exec: " << *reply.error << "\n";
            refused = true;
          }
          break;
        }
        case control::MessageType::kExit:
          return check(control::parse_exit_report(m.payload), kRunFailedExit).code;
        default: break;
      }
    }
  }
  if (refused) return kRunFailedExit;
  throw CliError(record.name + " stopped before the command finished", kRunFailedExit);
}

std::vector<VmRecord> live_records(CommandContext& ctx, VmType type) {
  std::vector<VmRecord> out;
  for (auto& r : check(ctx.state().list())) {
    if (r.type == type && r.alive()) out.push_back(std::move(r));
  }
  return out;
}

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
  const VmRecord record = find_running_vm(ctx, vm);
  if (record.type != VmType::vm) {
    throw CliError(record.name + " is a " + to_string(record.type) + "; snapshot the VM it came from");
  }
  control::SnapshotRequest request;
  request.tag = vm.count("tag") ? vm["tag"].as<std::string>() : record.name;
  check(SnapshotStore::validate_tag(request.tag), kUsageExit);
  request.disk_only = vm.count("disk-only") > 0;
  if (request.disk_only && exec_in_vm(record, {"sync"}) != 0) {
    // Only the disks are kept: what the guest has not written back yet would be lost.
    ctx.log()->warn("could not run 'sync' in " + record.name + "; writes still in its page cache are not in the snapshot");
  }
  const auto reply = ask_vm(record, request, kSnapshotWait, "snapshot " + request.tag);
  std::cout << request.tag << "\n";
  if (reply.snapshot) {
    ctx.log()->info("snapshot " + request.tag + ": the VM was paused " +
                    std::to_string(reply.snapshot->pause_ms) + " ms");
  }
  return 0;
}

int run_ls(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("snapshot ls options");
  desc.add_options()("json", "print a JSON array");
  auto vm = parse_command_line(ctx, "snapshot ls [--json]", desc, {}, args);
  SnapshotStore store(ctx.config().data_dir);
  const auto serves = live_records(ctx, VmType::serve);
  auto serving = [&](const std::string& tag) {
    std::vector<int> pids;
    for (const auto& s : serves) {
      if (s.snapshot == tag) pids.push_back(s.process.pid);
    }
    return pids;
  };
  if (vm.count("json")) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : store.list()) {
      auto j = to_json(s.manifest);
      j["dir"] = s.dir.string();
      j["serve_pids"] = serving(s.manifest.tag);
      j["disk"] = disk_usage(s.dir);
      j["disk_bytes"] = j["disk"]["allocated_bytes"];
      // Each serve's page-server counters, per clone VMM (empty for file memory).
      j["serves"] = nlohmann::json::array();
      for (const auto& serve : serves) {
        if (serve.snapshot != s.manifest.tag) continue;
        j["serves"].push_back({{"pid", serve.process.pid},
                               {"memory_clients", serve.vm_dir.empty() ? nlohmann::json::array()
                                                                       : MemoryStatsFile::read_clients(serve.vm_dir)}});
      }
      out.push_back(std::move(j));
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "TAG\tSOURCE\tIMAGE\tKIND\tPAUSE_MS\tSERVES\tCREATED\n";
  for (const auto& s : store.list()) {
    std::string pids;
    for (int p : serving(s.manifest.tag)) pids += (pids.empty() ? "" : ",") + std::to_string(p);
    std::cout << s.manifest.tag << "\t" << s.manifest.source_name << "\t" << s.manifest.image << "\t"
              << (s.manifest.disk_only        ? "disk"
                  : s.manifest.cache_healthy  ? "cache(healthy)"
                  : s.manifest.is_cache()     ? "cache"
                                              : "full")
              << "\t" << s.manifest.pause_ms << "\t"
              << (pids.empty() ? "-" : pids) << "\t" << s.manifest.created << "\n";
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
  ctx.require_trusted_data_dir();
  if (!vm.count("force")) {
    for (const auto& s : live_records(ctx, VmType::serve)) {
      if (s.snapshot == tag) {
        throw CliError("snapshot '" + tag + "' is served by process " + std::to_string(s.process.pid) +
                       "; stop it first or pass --force");
      }
    }
  }
  SnapshotStore store(ctx.config().data_dir);
  check(remove_snapshot(ctx, store, check(store.get(tag))));
  store.sweep_stale();
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
  ctx.require_trusted_data_dir();  // it may take over, and at exit remove, a dead serve's directory
  const auto snap = check(SnapshotStore(ctx.config().data_dir).get(vm["tag"].as<std::string>()));
  if (snap.manifest.disk_only) throw CliError("snapshot '" + snap.manifest.tag + "' has no memory to serve; clone it with 'fcvm snapshot run --snapshot'");
  auto memory = ctx.backend_as<MemoryBackend>(PluginKind::memory);
  const std::string memory_plugin = ctx.chosen_plugin(PluginKind::memory);
  std::optional<std::string> name;
  if (vm.count("name")) name = vm["name"].as<std::string>();

  block_stop_signals();
  ServeSpec spec{snap, memory, memory_plugin, name, prefetch == "on"};
  check(serve_snapshot(SessionServices{ctx.state(), ctx.config().data_dir, ctx.log()}, spec,
                  [&](const std::filesystem::path& socket) {
                    std::cout << "serving snapshot " << snap.manifest.tag << ": pid " << ::getpid() << ", socket "
                              << (socket.empty() ? std::string("none (file memory: clones map the image)")
                                                 : socket.string())
                              << "\n"
                              << std::flush;
                  }));
  return 0;
}

// A running serve's page server, as its record names it; nullopt when it serves file memory.
std::optional<CloneMemory::PageServer> served_memory(CommandContext& ctx, const VmRecord& serve) {
  const auto& extra = serve.extra;
  if (!extra.contains("memory_socket") || !extra["memory_socket"].is_string()) return std::nullopt;
  if (!extra.contains("control_socket") || !extra["control_socket"].is_string() ||
      !serve.plugins.count(PluginKind::memory)) {
    throw CliError("serve process " + std::to_string(serve.process.pid) + " has a malformed record; restart it");
  }
  const auto& chosen = ctx.config().plugins;
  const auto& name = serve.plugins.at(PluginKind::memory);
  if (auto it = chosen.find(PluginKind::memory); it != chosen.end() && it->second != name) {
    throw CliError("serve process " + std::to_string(serve.process.pid) + " serves memory with " + name +
                   ", not " + it->second + "; drop --memory or pick another serve", kUsageExit);
  }
  return CloneMemory::PageServer{extra["memory_socket"].get<std::string>(), extra["control_socket"].get<std::string>(),
                                 name};
}

VmRecord find_page_server(CommandContext& ctx, const std::string& tag, const std::string& memory) {
  for (auto& r : live_records(ctx, VmType::serve)) {
    auto it = r.plugins.find(PluginKind::memory);
    if (r.snapshot == tag && it != r.plugins.end() && it->second == memory) return std::move(r);
  }
  throw CliError("no 'fcvm snapshot serve " + tag + " --memory " + memory + "' is running; start one (" + memory +
                 " clones get their memory from it), or clone with --memory file", kUsageExit);
}

int run_clone(CommandContext& ctx, const std::vector<std::string>& args) {
  po::options_description desc("snapshot run options");
  desc.add_options()
      ("pid", po::value<int>(), "the serve process to clone from")
      ("snapshot", po::value<std::string>(), "clone this snapshot without a serve process")
      ("name", po::value<std::string>(), "name of the clone")
      ("publish,p", po::value<std::vector<std::string>>()->composing(), "publish a port: [HOST_IP:]HOST_PORT:GUEST_PORT")
      ("detach,d", "run in the background and print the clone's name")
      ("kernel", po::value<std::filesystem::path>(), "disk-only snapshots: boot this guest kernel instead of the one 'fcvm setup' built")
      ("exec", "run the command after the options in a new clone, print its output, exit with its code, remove the clone");
  auto [vm, command] = parse_until_target(ctx, "snapshot run --pid SERVE_PID|--snapshot TAG [OPTIONS] [--exec COMMAND [ARG...]]", desc, "cmd", args);
  if (vm.count("cmd")) command.insert(command.begin(), vm["cmd"].as<std::string>());
  if (vm.count("pid") == vm.count("snapshot")) throw CliError("give --pid SERVE_PID or --snapshot TAG (one of them)", kUsageExit);
  const bool exec = vm.count("exec") > 0;
  if (exec && command.empty()) throw CliError("--exec needs a command", kUsageExit);
  if (!exec && !command.empty()) throw CliError("a clone continues its snapshot's container; to run a command in it, use --exec", kUsageExit);

  SnapshotStore store(ctx.config().data_dir);
  std::optional<VmRecord> serve_record;
  std::string tag;
  if (vm.count("pid")) {
    auto rec = ctx.state().find_by_pid(vm["pid"].as<int>());
    if (!rec || rec->type != VmType::serve || !rec->alive()) {
      throw CliError("process " + std::to_string(vm["pid"].as<int>()) + " is not a running 'fcvm snapshot serve' (see 'fcvm ls')");
    }
    serve_record = *rec;
    tag = rec->snapshot;
  } else {
    tag = vm["snapshot"].as<std::string>();
    // A memory backend with a page server clones through a running serve of the snapshot.
    if (ctx.backend_as<MemoryBackend>(PluginKind::memory)->capabilities().needs_server) {
      serve_record = find_page_server(ctx, tag, ctx.chosen_plugin(PluginKind::memory));
    }
  }
  const std::optional<ProcessIdentity> serve =
      serve_record ? std::optional<ProcessIdentity>(serve_record->process) : std::nullopt;
  CloneSpec spec;
  spec.snapshot = check(store.get(tag));
  spec.memory.page_server = serve_record ? served_memory(ctx, *serve_record) : std::nullopt;
  if (!spec.memory.page_server) {
    spec.memory.backend = ctx.backend_as<MemoryBackend>(PluginKind::memory);
    spec.memory.plugin = ctx.chosen_plugin(PluginKind::memory);
  }
  spec.serve = serve;
  if (vm.count("kernel")) spec.kernel = vm["kernel"].as<std::filesystem::path>();
  spec.data_dir = ctx.config().data_dir;
  spec.log = ctx.log();

  SessionBackends backends;
  backends.vmm = ctx.backend_as<VmmBackend>(PluginKind::vmm);
  backends.storage = ctx.backend_as<StorageBackend>(PluginKind::storage);
  backends.network = ctx.backend_as<NetworkBackend>(PluginKind::network);
  for (auto kind : {PluginKind::vmm, PluginKind::storage, PluginKind::network}) {
    if (auto name = ctx.chosen_plugin(kind); !name.empty()) backends.names[kind] = name;
  }
  if (Status st = check_clone_backends(spec.snapshot.manifest, backends); !st.ok()) {
    throw CliError(st, st.code() == Errc::invalid_argument ? kUsageExit : 1);
  }
  const bool page_served = spec.memory.page_server.has_value();
  auto origin = check(clone_origin(spec), kRunFailedExit);

  VmSessionOptions options;
  if (vm.count("name")) options.name = vm["name"].as<std::string>();
  if (vm.count("publish")) {
    for (const auto& p : vm["publish"].as<std::vector<std::string>>()) {
      options.ports.push_back(check(parse_port_mapping(p), kUsageExit));
    }
  }
  const bool detach = exec || vm.count("detach") > 0;
  options.keep_exited = !exec;
  options.forward_output = !detach;
  options.log_max_bytes = ctx.config().log_max_bytes;
  // A clone whose pages come from its serve outlives a serve killed with -9, hung at its
  // next fault, so that a restarted serve can adopt it ('fcvm gc' stops it otherwise).
  if (!page_served) options.stop_with = serve;
  VmSession session(SessionServices{ctx.state(), ctx.config().data_dir, ctx.log()}, std::move(backends),
                    std::move(options));
  check(session.check(), kRunFailedExit);
  block_stop_signals();
  if (!detach) return check(session.run(*origin), kRunFailedExit);
  check(run_detached(session, *origin), kRunFailedExit);
  if (!exec) {
    std::cout << session.name() << "\n";
    return 0;
  }
  const VmRecord clone = check(ctx.state().find_by_name(session.name()), kRunFailedExit);
  int code = kRunFailedExit;
  try {
    code = exec_in_vm(clone, command);
  } catch (...) {
    stop_process(clone.process, kStopWait);
    throw;
  }
  stop_process(clone.process, kStopWait);
  return code;
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
