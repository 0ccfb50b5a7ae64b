// End-to-end tests of `fcvm ls`, `fcvm gc`, `fcvm config show` and `fcvm setup preflight`:
// they run the built fcvm binary against a private data dir and read what it prints.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm/storage.h"
#include "log/logging.h"
#include "plugin/plugin_registry.h"
#include "state/state_store.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path binary_dir() {
  const char* env = std::getenv("FCVM_BINARY_DIR");
  return env ? fs::path(env) : fs::path(FCVM_BINARY_DIR);
}

struct CliRun {
  int code = -1;
  std::string out;
  std::string err;
};

// The identity of a process that existed and is gone.
ProcessIdentity dead_identity() {
  int fds[2];
  if (::pipe(fds) != 0) return {};
  const pid_t child = ::fork();
  if (child == 0) {
    char c;
    ::close(fds[1]);
    (void)!::read(fds[0], &c, 1);
    ::_exit(0);
  }
  ::close(fds[0]);
  auto id = ProcessIdentity::of(child);
  ::close(fds[1]);
  ::waitpid(child, nullptr, 0);
  return id.ok() ? *id : ProcessIdentity{};
}

class StateCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fcvm_ = binary_dir() / "bin" / "fcvm";
    ASSERT_TRUE(fs::exists(fcvm_)) << fcvm_ << " is missing: build the fcvm target first";
    auto made = TempDir::create("fcvm-cli-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    tmp_dir_ = std::move(*made);
    tmp_ = tmp_dir_.path();
    data_dir_ = tmp_ / "data";
    fs::create_directories(data_dir_);
    config_ = tmp_ / "config.json";
    std::ofstream(config_) << "{}";
  }

  // Runs fcvm with `args` after the global --config (so no host config leaks in). FCVM_*
  // variables are blanked (empty counts as unset) unless `env` sets them.
  CliRun fcvm(std::vector<std::string> args, std::vector<std::string> env = {},
           bool with_config = true) {
    std::vector<std::string> argv = {fcvm_.string()};
    if (with_config) argv.insert(argv.end(), {"--config", config_.string()});
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> env_add = env;
    for (const char* blank : {"FCVM_CONFIG=", "FCVM_DATA_DIR=", "FCVM_LOG=", "FCVM_PLUGIN_PATH="}) {
      const std::string_view key(blank);
      const bool set = std::any_of(env.begin(), env.end(),
                                   [&](const std::string& e) { return e.rfind(key, 0) == 0; });
      if (!set) env_add.emplace_back(blank);
    }
    env_add.emplace_back("NO_COLOR=1");
    const fs::path out = tmp_ / "stdout", err = tmp_ / "stderr";
    UniqueFd out_fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    UniqueFd err_fd(::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    SpawnOptions opts;
    opts.argv = argv;
    opts.env_add = env_add;
    opts.stdout_fd = out_fd.get();
    opts.stderr_fd = err_fd.get();
    auto child = ChildProcess::spawn(opts);
    CliRun r;
    if (!child.ok()) {
      r.err = child.status().message();
      return r;
    }
    auto status = child->wait(std::chrono::milliseconds(60000));
    r.code = status ? status->code : -1;
    r.out = read_file(out).ok() ? *read_file(out) : "";
    r.err = read_file(err).ok() ? *read_file(err) : "";
    return r;
  }

  VmRecord make_record(const std::string& name, ProcessIdentity process) {
    VmRecord r;
    r.name = name;
    r.process = process;
    r.status = VmStatus::running;
    r.image = "busybox:latest";
    return r;
  }

  TempDir tmp_dir_;
  fs::path fcvm_, tmp_, data_dir_, config_;
};

TEST_F(StateCommandsTest, LsShowsLiveAndDeadRecords) {
  StateStore store(data_dir_);
  auto live = store.create(make_record("live-one", ProcessIdentity::self()));
  auto dead = store.create(make_record("dead-one", dead_identity()));
  ASSERT_TRUE(live.ok() && dead.ok());

  CliRun table = fcvm({"--data-dir", data_dir_.string(), "ls"});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("NAME", 0), 0u) << table.out;
  for (const char* col : {"ID", "TYPE", "STATUS", "PID", "IMAGE/SNAPSHOT", "CREATED"}) {
    EXPECT_NE(table.out.find(col), std::string::npos) << col;
  }
  std::istringstream lines(table.out);
  std::string line;
  int rows = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("live-one", 0) == 0) {
      EXPECT_NE(line.find(" running "), std::string::npos) << line;
      ++rows;
    } else if (line.rfind("dead-one", 0) == 0) {
      EXPECT_NE(line.find(" dead "), std::string::npos) << line;
      ++rows;
    }
  }
  EXPECT_EQ(rows, 2) << table.out;

  CliRun as_json = fcvm({"ls", "--json", "--data-dir", data_dir_.string()});
  ASSERT_EQ(as_json.code, 0) << as_json.err;
  const json all = json::parse(as_json.out);
  ASSERT_EQ(all.size(), 2u);
  for (const auto& j : all) {
    EXPECT_EQ(j["alive"], j["name"] == "live-one") << j.dump();
    EXPECT_TRUE(vm_record_from_json(j).ok());
  }

  CliRun by_name = fcvm({"--data-dir", data_dir_.string(), "ls", "--json", "--name", "dead-one"});
  ASSERT_EQ(by_name.code, 0) << by_name.err;
  ASSERT_EQ(json::parse(by_name.out).size(), 1u);
  EXPECT_EQ(json::parse(by_name.out)[0]["id"], dead->id);

  CliRun by_pid = fcvm({"--data-dir", data_dir_.string(), "ls", "--json", "--pid",
                     std::to_string(::getpid())});
  ASSERT_EQ(by_pid.code, 0) << by_pid.err;
  ASSERT_EQ(json::parse(by_pid.out).size(), 1u);
  EXPECT_EQ(json::parse(by_pid.out)[0]["name"], "live-one");
}

TEST_F(StateCommandsTest, LsOnAnEmptyDataDir) {
  CliRun r = fcvm({"--data-dir", (tmp_ / "fresh").string(), "ls", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::array());
  EXPECT_FALSE(fs::exists(tmp_ / "fresh" / "state"));  // listing creates nothing
}

TEST_F(StateCommandsTest, GcRemovesDeadRecordsAndTheirDirsOnly) {
  StateStore store(data_dir_);
  auto live = make_record("alive", ProcessIdentity::self());
  live.vm_dir = data_dir_ / "vms" / "alive";
  fs::create_directories(live.vm_dir);
  auto dead = make_record("gone", dead_identity());
  dead.vm_dir = data_dir_ / "vms" / "gone";
  fs::create_directories(dead.vm_dir / "sub");
  std::ofstream(dead.vm_dir / "sub" / "console.log") << "bye";
  auto live_rec = store.create(live);
  auto dead_rec = store.create(dead);
  ASSERT_TRUE(live_rec.ok() && dead_rec.ok());

  CliRun r = fcvm({"--data-dir", data_dir_.string(), "gc", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json out = json::parse(r.out);
  ASSERT_EQ(out["removed"].size(), 1u) << r.out;
  EXPECT_EQ(out["removed"][0]["id"], dead_rec->id);
  EXPECT_EQ(out["removed"][0]["cleaned"], json::array({dead.vm_dir.string()}));
  EXPECT_EQ(out["kept"], json::array());
  EXPECT_FALSE(fs::exists(dead.vm_dir));
  EXPECT_EQ(store.get(dead_rec->id).status().code(), Errc::not_found);
  EXPECT_TRUE(fs::exists(live.vm_dir));
  EXPECT_TRUE(store.get(live_rec->id).ok());

  // The name of the collected record is free again.
  EXPECT_TRUE(store.create(make_record("gone", ProcessIdentity::self())).ok());

  CliRun again = fcvm({"--data-dir", data_dir_.string(), "gc"});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.out, "nothing to collect\n");
}

TEST_F(StateCommandsTest, GcKeepsARecordWhosePluginCannotBeLoaded) {
  StateStore store(data_dir_);
  auto rec = make_record("orphan", dead_identity());
  rec.vm_dir = data_dir_ / "vms" / "orphan";
  fs::create_directories(rec.vm_dir);
  DiskLease disk;
  disk.plugin = "storage-nonexistent";
  disk.drives = {Drive{"scratch", rec.vm_dir / "scratch.ext4", false}};
  rec.disk = disk;
  auto net_rec = make_record("orphan-net", dead_identity());
  NetworkLease net;
  net.plugin = "network-nonexistent";
  net_rec.network = net;
  auto created = store.create(rec);
  auto created_net = store.create(net_rec);
  ASSERT_TRUE(created.ok() && created_net.ok());

  CliRun r = fcvm({"--data-dir", data_dir_.string(), "gc"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("fcvm: warning: gc: keeping orphan (" + created->id +
                       "): cannot load storage plugin 'storage-nonexistent'"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("gc: keeping orphan-net (" + created_net->id +
                       "): cannot load network plugin 'network-nonexistent'"),
            std::string::npos)
      << r.err;
  // Nothing it could not clean is forgotten.
  EXPECT_TRUE(store.get(created->id).ok());
  EXPECT_TRUE(store.get(created_net->id).ok());
  EXPECT_TRUE(fs::exists(rec.vm_dir));

  CliRun j = fcvm({"--data-dir", data_dir_.string(), "gc", "--json"});
  EXPECT_EQ(j.code, 1);
  EXPECT_EQ(json::parse(j.out)["kept"].size(), 2u) << j.out;
}

TEST_F(StateCommandsTest, GcNeverDeletesOutsideTheDataDir) {
  StateStore store(data_dir_);
  auto rec = make_record("escaped", dead_identity());
  rec.vm_dir = tmp_ / "elsewhere";
  fs::create_directories(rec.vm_dir);
  auto created = store.create(rec);
  ASSERT_TRUE(created.ok());
  CliRun r = fcvm({"--data-dir", data_dir_.string(), "gc"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("is outside the data dir"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(rec.vm_dir));
  EXPECT_TRUE(store.get(created->id).ok());
}

// A lease made by the real storage-squashfs plugin, through the real loader, destroyed by
// gc in another process: the VM's scratch disk goes, the shared base stays.
TEST_F(StateCommandsTest, GcDestroysDisksThroughTheRecordedPlugin) {
  const fs::path plugin_dir = binary_dir() / "lib" / "fcvm" / "plugins";
  if (!fs::exists(plugin_dir / "fcvm-storage-squashfs.so")) {
    GTEST_SKIP() << "fcvm-storage-squashfs.so is not built in " << plugin_dir;
  }
  PluginRegistry registry({plugin_dir}, null_logger());
  PluginContext pctx{null_logger(), json::object(), data_dir_};
  auto storage = registry.create_as<StorageBackend>("storage-squashfs", PluginKind::storage, pctx);
  ASSERT_TRUE(storage.ok()) << storage.status().message();
  if (Probe p = (*storage)->probe(); !p.available) GTEST_SKIP() << p.reason;

  const fs::path rootfs = tmp_ / "rootfs";
  fs::create_directories(rootfs / "etc");
  std::ofstream(rootfs / "etc" / "hostname") << "gc-test\n";
  auto base = (*storage)->prepare_base(
      {"sha256:" + std::string(64, 'a'), rootfs});
  ASSERT_TRUE(base.ok()) << base.status().message();

  StateStore store(data_dir_);
  auto rec = make_record("with-disks", dead_identity());
  rec.plugins[PluginKind::storage] = "storage-squashfs";
  auto created = store.create(rec);
  ASSERT_TRUE(created.ok());
  const fs::path vm_dir = data_dir_ / "vms" / created->id;
  fs::create_directories(vm_dir);
  auto lease = (*storage)->create_disks(*base, vm_dir, DiskOptions{16});
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  ASSERT_TRUE(store.update(created->id, [&](VmRecord& r) {
    r.vm_dir = vm_dir;
    r.disk = *lease;
    return ok_status();
  }).ok());
  std::vector<fs::path> writable;
  for (const auto& d : lease->drives) {
    if (!d.read_only) writable.push_back(d.path);
  }
  ASSERT_FALSE(writable.empty());
  for (const auto& p : writable) ASSERT_TRUE(fs::exists(p)) << p;

  CliRun r = fcvm({"--data-dir", data_dir_.string(), "gc", "--json"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const json out = json::parse(r.out);
  ASSERT_EQ(out["removed"].size(), 1u) << r.out;
  EXPECT_EQ(out["removed"][0]["cleaned"][0], "disks (storage-squashfs)");
  for (const auto& p : writable) EXPECT_FALSE(fs::exists(p)) << p;
  EXPECT_FALSE(fs::exists(vm_dir));
  EXPECT_TRUE(fs::exists(base->path)) << "the shared base must survive";
  EXPECT_EQ(store.get(created->id).status().code(), Errc::not_found);
}

TEST_F(StateCommandsTest, ConfigShowAppliesFileThenEnvironmentThenFlags) {
  std::ofstream(config_) << R"({"data_dir": "/from/file", "log_level": "error",
                                "plugins": {"vmm": "vmm-file", "storage": "storage-file"},
                                "plugin_config": {"vmm-file": {"k": 1}}})";
  CliRun file_only = fcvm({"config", "show"});
  ASSERT_EQ(file_only.code, 0) << file_only.err;
  json j = json::parse(file_only.out);
  EXPECT_EQ(j["data_dir"], "/from/file");
  EXPECT_EQ(j["log_level"], "error");
  EXPECT_EQ(j["plugin_config"], json({{"vmm-file", {{"k", 1}}}}));

  CliRun with_env = fcvm({"config", "show"}, {"FCVM_DATA_DIR=/from/env", "FCVM_LOG=info"});
  ASSERT_EQ(with_env.code, 0) << with_env.err;
  j = json::parse(with_env.out);
  EXPECT_EQ(j["data_dir"], "/from/env");
  EXPECT_EQ(j["log_level"], "info");

  CliRun with_flags = fcvm({"config", "show", "--data-dir", "/from/flag", "--log-level", "debug",
                         "--vmm", "vmm-flag", "--plugin", "network=network-flag"},
                        {"FCVM_DATA_DIR=/from/env", "FCVM_LOG=info"});
  ASSERT_EQ(with_flags.code, 0) << with_flags.err;
  j = json::parse(with_flags.out);
  EXPECT_EQ(j["data_dir"], "/from/flag");
  EXPECT_EQ(j["log_level"], "debug");
  EXPECT_EQ(j["plugins"], json({{"vmm", "vmm-flag"}, {"network", "network-flag"},
                                {"storage", "storage-file"}}));

  // $FCVM_CONFIG names the file when --config does not.
  CliRun via_env = fcvm({"config", "show"}, {"FCVM_CONFIG=" + config_.string()}, false);
  ASSERT_EQ(via_env.code, 0) << via_env.err;
  EXPECT_EQ(json::parse(via_env.out)["data_dir"], "/from/file");
}

TEST_F(StateCommandsTest, ConfigErrorsAreOneLineNamingTheFix) {
  std::ofstream(config_) << R"({"plugins": {"vmm": 3}})";
  CliRun wrong_type = fcvm({"config", "show"});
  EXPECT_EQ(wrong_type.code, 1);
  EXPECT_EQ(wrong_type.err,
            "fcvm: config " + config_.string() + ": plugins.vmm: expected a string, got number\n");

  std::ofstream(config_) << R"({"colour": true})";
  CliRun unknown = fcvm({"ls"});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_NE(unknown.err.find(": unknown key 'colour'; known keys are"), std::string::npos)
      << unknown.err;

  CliRun missing = fcvm({"--config", (tmp_ / "nope.json").string(), "config", "show"}, {}, false);
  EXPECT_EQ(missing.code, 1);
  EXPECT_EQ(missing.err, "fcvm: config file " + (tmp_ / "nope.json").string() +
                             " does not exist; create it or drop --config\n");

  std::ofstream(config_) << "{}";
  CliRun bad_plugin = fcvm({"config", "show", "--plugin", "gpu=nvidia"});
  EXPECT_EQ(bad_plugin.code, 1);
  EXPECT_NE(bad_plugin.err.find("--plugin 'gpu=nvidia': unknown kind 'gpu'; use one of vmm, "
                                "network, storage, memory"),
            std::string::npos)
      << bad_plugin.err;
}

TEST_F(StateCommandsTest, PreflightReportsEveryCheckAndExitsZero) {
  CliRun r = fcvm({"setup", "preflight", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json out = json::parse(r.out);
  ASSERT_TRUE(out["checks"].is_array());
  std::map<std::string, json> by_name;
  for (const auto& c : out["checks"]) {
    by_name[c["name"]] = c;
    const std::string status = c["status"];
    EXPECT_TRUE(status == "ok" || status == "missing") << c.dump();
    EXPECT_FALSE(c["detail"].get<std::string>().empty()) << c.dump();
    // Every missing item says how to get it.
    EXPECT_EQ(status == "missing", !c["fix"].get<std::string>().empty()) << c.dump();
  }
  for (const char* name : {"kvm", "userfaultfd", "btrfs", "user namespaces",
                           "qemu-system-x86_64", "skopeo", "umoci", "mksquashfs", "mkfs.ext4",
                           "mkfs.btrfs", "slirp4netns", "nft", "ip", "cpio", "gzip",
                           "linux-source-6.1", "kernel build deps"}) {
    EXPECT_EQ(by_name.count(name), 1u) << name;
  }
  EXPECT_EQ(out["accel"] == "kvm", by_name["kvm"]["status"] == "ok");
  if (by_name["skopeo"]["status"] == "missing") {
    EXPECT_EQ(by_name["skopeo"]["fix"], "apt-get install skopeo");
  }
  // gzip is in Debian's essential set, so this host has it.
  EXPECT_EQ(by_name["gzip"]["status"], "ok");

  CliRun table = fcvm({"setup", "preflight"});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("CHECK", 0), 0u) << table.out;
  EXPECT_NE(table.out.find("VMs will run with"), std::string::npos);
}

}  // namespace
}  // namespace fcvm
