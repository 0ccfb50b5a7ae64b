#include "fcvm_cli.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "fcvm/atomic_file.h"

namespace fcvm::test {
namespace {

std::filesystem::path fcvm_binary() {
  return std::filesystem::path(FCVM_BINARY_DIR) / "bin" / "fcvm";
}

}  // namespace

FcvmCli::FcvmCli(std::string vmm) : vmm_(std::move(vmm)) {
  auto made = TempDir::create("fcvm-e2e-");
  if (!made) throw std::runtime_error(made.status().message());
  data_dir_ = std::move(*made);
}

FcvmCli::~FcvmCli() {
  // A test that failed mid-way may leave VMs: stop them before removing their files.
  try {
    for (const auto& r : ls()) {
      if (r.value("alive", false)) (void)run({"stop", r["id"].get<std::string>()});
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "listing the VMs to stop: " << e.what();
  }
  (void)run({"gc"});
  // Once everything is stopped and collected, nothing of this data dir may remain (a VMM
  // goes with its fcvm process, asynchronously: it gets a few seconds).
  auto left = leaks();
  for (int tries = 0; !left.empty() && tries < 100; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    left = leaks();
  }
  for (const auto& leak : left) ADD_FAILURE() << "left behind: " << leak;
}

std::vector<std::string> FcvmCli::leaks() const {
  const std::string under = data_dir().string() + "/";
  std::vector<std::string> found;
  for (pid_t pid : processes_matching(under)) found.push_back("process " + std::to_string(pid));
  std::ifstream mounts("/proc/self/mounts");
  for (std::string dev, point, rest; mounts >> dev >> point && std::getline(mounts, rest);) {
    if (point.rfind(under, 0) == 0) found.push_back("mount " + point);
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/block", ec)) {
    std::ifstream backing(e.path() / "loop" / "backing_file");
    std::string file;
    if (std::getline(backing, file) && file.rfind(under, 0) == 0) found.push_back("loop device of " + file);
  }
  for (const auto& e : std::filesystem::directory_iterator(data_dir() / "snapshots", ec)) {
    if (e.path().filename().string()[0] == '.') found.push_back("unfinished snapshot " + e.path().string());
  }
  return found;
}

std::filesystem::path FcvmCli::kernel() {
  const char* k = std::getenv("FCVM_TEST_KERNEL");
  return k ? k : "";
}

std::string FcvmCli::missing_prerequisite() {
  if (::geteuid() != 0) return "needs root (tap devices, loop mounts and image unpacking)";
  if (kernel().empty() || !std::filesystem::exists(kernel())) {
    return "no guest kernel: set FCVM_TEST_KERNEL (scripts/test does, after 'fcvm setup kernel')";
  }
  if (!std::filesystem::exists(std::filesystem::path(FCVM_BINARY_DIR) / "lib/fcvm/fc-agent")) {
    return "fc-agent was not built";
  }
  return {};
}

std::string FcvmCli::hello_image() {
  static const std::string ref = [] {
    const auto layout = std::filesystem::path(FCVM_BINARY_DIR) / "tests" / "hello-oci";
    auto built = run_command({std::string(FCVM_SOURCE_DIR) + "/examples/hello/build.sh", layout.string()});
    if (!built) throw std::runtime_error("building the example image: " + built.status().message());
    return "oci:" + layout.string() + ":hello";
  }();
  return ref;
}

std::vector<std::string> FcvmCli::base_args() const {
  std::vector<std::string> args = {fcvm_binary().string(), "--data-dir", data_dir().string()};
  if (!vmm_.empty()) args.insert(args.end(), {"--vmm", vmm_});
  return args;
}

std::string FcvmCli::vmm_unavailable() const {
  if (vmm_.empty()) return {};
  auto r = run({"plugins", "--json"});
  if (r.code != 0) return "fcvm plugins failed: " + r.err;
  for (const auto& p : nlohmann::json::parse(r.out)) {
    if (p.value("name", "") != vmm_) continue;
    return p.value("available", false) ? "" : vmm_ + " unavailable: " + p.value("reason", "");
  }
  return "the " + vmm_ + " plugin was not found";
}

CliResult FcvmCli::run(const std::vector<std::string>& args, const RunOptions& options) const {
  static int counter = 0;
  const auto stem = data_dir() / (".cli-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  UniqueFd out(::open((stem.string() + ".out").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  UniqueFd err(::open((stem.string() + ".err").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  SpawnOptions opts;
  if (options.as_user) {
    opts.argv = {"setpriv", "--reuid=" + std::to_string(options.as_user->first),
                 "--regid=" + std::to_string(options.as_user->second), "--clear-groups", "--"};
  }
  const auto base = base_args();
  opts.argv.insert(opts.argv.end(), base.begin(), base.end());
  opts.argv.insert(opts.argv.end(), args.begin(), args.end());
  opts.env_add = options.env_add;
  opts.stdout_fd = out.get();
  opts.stderr_fd = err.get();
  CliResult r;
  auto child = ChildProcess::spawn(opts);
  if (!child) {
    r.err = child.status().message();
    return r;
  }
  auto st = child->wait();
  r.code = st ? st->code : -1;
  r.out = read_file(stem.string() + ".out").value();
  r.err = read_file(stem.string() + ".err").value();
  std::filesystem::remove(stem.string() + ".out");
  std::filesystem::remove(stem.string() + ".err");
  return r;
}

ChildProcess FcvmCli::start(const std::vector<std::string>& args) const {
  static int counter = 0;
  const auto stem = data_dir() / (".bg-" + std::to_string(counter++));
  UniqueFd out(::open((stem.string() + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  SpawnOptions opts;
  opts.argv = base_args();
  opts.argv.insert(opts.argv.end(), args.begin(), args.end());
  opts.stdout_fd = out.get();
  opts.stderr_fd = out.get();
  opts.die_with_parent = true;
  auto child = ChildProcess::spawn(opts);
  if (!child) throw std::runtime_error(child.status().message());
  return std::move(child).value();
}

nlohmann::json FcvmCli::ls() const {
  auto r = run({"ls", "-a", "--json"});
  if (r.code != 0) throw std::runtime_error("fcvm ls failed: " + r.err);
  return nlohmann::json::parse(r.out);
}

nlohmann::json FcvmCli::record(const std::string& name) const {
  for (const auto& rec : ls()) {
    if (rec.value("name", "") == name) return rec;
  }
  return nullptr;
}

bool FcvmCli::wait_status(const std::string& name, const std::string& status,
                          std::chrono::seconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto rec = record(name);
    if (!rec.is_null() && rec.value("status", "") == status) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::string test_param_name(std::string plugin) {
  std::replace(plugin.begin(), plugin.end(), '-', '_');
  return plugin;
}

pid_t live_vmm(const nlohmann::json& record) {
  if (!record.is_object() || !record.value("vmm_pid", nlohmann::json()).is_number()) return 0;
  const auto pid = record["vmm_pid"].get<pid_t>();
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields;  // from field 3 (state) on; field 22 is the start time
  std::istringstream words(stat.substr(close + 2));
  for (std::string w; words >> w;) fields.push_back(w);
  if (fields.size() < 20 || fields[0] == "Z" || fields[0] == "X") return 0;
  return fields[19] == std::to_string(record.value("vmm_pid_start_time", 0ull)) ? pid : 0;
}

std::vector<pid_t> processes_matching(const std::string& needle) {
  std::vector<pid_t> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string cmdline = ss.str();
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(needle) != std::string::npos) pids.push_back(std::stoi(name));
  }
  return pids;
}

}  // namespace fcvm::test
