// fcvm podman run: podman's flags, the container's process in its own microVM.
#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {
namespace {

HealthFlags health_flags(const po::variables_map& vm) {
  auto flag = [&](const char* name) -> std::optional<std::string> {
    return vm.count(name) ? std::optional(vm[name].as<std::string>()) : std::nullopt;
  };
  return {flag("health-cmd"), flag("health-url"), flag("health-interval"),
          flag("health-timeout"), flag("health-start-period"), flag("health-retries")};
}

}  // namespace

Command podman_run_command() {
  return {{"podman", "run"}, "run a container image in a new microVM", [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("podman run options");
    desc.add_options()
        ("name", po::value<std::string>(), "name of the VM ([a-z0-9][a-z0-9_.-]*)")
        ("hostname", po::value<std::string>(), "the guest's hostname (default: the VM's name)")
        ("stop-signal", po::value<std::string>(), "signal 'fcvm stop' sends the process first (default TERM)")
        ("read-only", "mount the container's root read-only (/tmp, /var/tmp, /run, /dev stay writable)")
        ("init", "run an init as PID 1 of the process's own PID namespace: it forwards signals and reaps")
        ("env,e", po::value<std::vector<std::string>>()->composing(), "set KEY=VALUE (or pass KEY from this environment)")
        ("env-file", po::value<std::vector<std::string>>()->composing(), "read KEY=VALUE lines from a file")
        ("entrypoint", po::value<std::string>(), "override the image's entrypoint (a word or a JSON array)")
        ("workdir,w", po::value<std::string>(), "working directory of the process")
        ("user,u", po::value<std::string>(), "UID[:GID] or NAME[:GROUP] of the process")
        ("cpus", po::value<unsigned>()->default_value(1), "virtual CPUs")
        ("memory,m", po::value<std::string>()->default_value("256"), "guest memory, in MiB (512, 512m, 1g)")
        ("publish,p", po::value<std::vector<std::string>>()->composing(), "publish a port: [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]")
        ("pull", po::value<std::string>()->default_value("missing"),
         "when to fetch the image: missing (use a stored copy), always, never, newer")
        ("interactive,i", "keep stdin open: it feeds the container's process, EOF included")
        ("tty,t", "run the process on a pseudo-terminal in the guest (stdout and stderr merged)")
        ("rm", "remove the VM's record and files when it exits")
        ("detach,d", "run in the background and print the VM's name")
        ("no-snapshot", "boot even when a startup snapshot of this container exists, and take none")
        ("kernel", po::value<std::filesystem::path>(), "boot this guest kernel instead of the one 'fcvm setup' built")
        ("health-cmd", po::value<std::string>(), "health check: a command run in the guest (sh -c); exit 0 is healthy")
        ("health-url", po::value<std::string>(), "health check: HTTP GET from the host; http://guest:PORT/PATH names a published guest port")
        ("health-interval", po::value<std::string>(), "time between checks (default 30s; 'disable': none)")
        ("health-timeout", po::value<std::string>(), "a check taking longer fails (default 30s)")
        ("health-retries", po::value<std::string>(), "failures in a row that make the container unhealthy (default 3)")
        ("health-start-period", po::value<std::string>(), "failures in this time after start do not count (default 0s)");
    // Everything after the image is the container's command, options included.
    auto [vm, command] = parse_until_target(ctx, "podman run [OPTIONS] IMAGE [COMMAND [ARG...]]", desc, "image", args);
    if (!vm.count("image")) throw CliError("podman run needs an image (see 'fcvm podman run --help')", kUsageExit);

    ContainerRequest req;
    req.image = vm["image"].as<std::string>();
    req.process.args = command;
    if (vm.count("name")) req.name = vm["name"].as<std::string>();
    if (vm.count("hostname")) {
      req.hostname = vm["hostname"].as<std::string>();
      check(check_hostname(*req.hostname), kUsageExit);
    }
    if (vm.count("env")) req.process.env = vm["env"].as<std::vector<std::string>>();
    if (vm.count("env-file")) {
      for (const auto& f : vm["env-file"].as<std::vector<std::string>>()) req.process.env_files.emplace_back(f);
    }
    if (vm.count("entrypoint")) req.process.entrypoint = vm["entrypoint"].as<std::string>();
    if (vm.count("workdir")) req.process.workdir = vm["workdir"].as<std::string>();
    if (vm.count("user")) req.process.user = vm["user"].as<std::string>();
    if (vm.count("stop-signal")) req.stop_signal = check(parse_stop_signal(vm["stop-signal"].as<std::string>()), kUsageExit);
    req.vcpus = vm["cpus"].as<unsigned>();
    if (req.vcpus == 0 || req.vcpus > 64) throw CliError("--cpus must be between 1 and 64", kUsageExit);
    req.memory_mib = check(parse_memory_mib(vm["memory"].as<std::string>()), kUsageExit);
    if (vm.count("publish")) {
      for (const auto& p : vm["publish"].as<std::vector<std::string>>()) {
        req.ports.push_back(check(parse_port_mapping(p), kUsageExit));
      }
    }
    req.pull = check(parse_pull_policy(vm["pull"].as<std::string>()), kUsageExit);
    req.remove = vm.count("rm") > 0;
    req.read_only = vm.count("read-only") > 0;
    req.init = vm.count("init") > 0;
    req.interactive = vm.count("interactive") > 0;
    req.tty = vm.count("tty") > 0;
    req.detach = vm.count("detach") > 0;
    req.startup_snapshot = vm.count("no-snapshot") == 0;
    if (vm.count("kernel")) req.kernel = vm["kernel"].as<std::filesystem::path>();
    req.health = check(parse_health_flags(health_flags(vm)), kUsageExit);

    // podman's codes: 125 when the run itself failed; the container's own code otherwise,
    // including 126 (command cannot be invoked) and 127 (not found), which the guest reports.
    auto outcome = check_engine(ctx.engine().run(req), kPodmanErrorExit);
    if (req.detach) std::cout << outcome.name << "\n";
    return outcome.exit_code;
  }};
}

}  // namespace fcvm::cli
