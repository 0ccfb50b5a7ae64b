// End-to-end tests of `fcvm ls`, `fcvm gc`, `fcvm config show` and `fcvm setup preflight`:
// they run the built fcvm binary against a private data dir and read what it prints.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

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

  // Starts fcvm with `args` after --config (FCVM_* blanked), output to the given files.
  ChildProcess start_fcvm(const std::vector<std::string>& args, const fs::path& out,
                          const fs::path& err) {
    SpawnOptions opts;
    opts.argv = {fcvm_.string(), "--config", config_.string()};
    opts.argv.insert(opts.argv.end(), args.begin(), args.end());
    opts.env_add = {"FCVM_CONFIG=", "FCVM_DATA_DIR=", "FCVM_LOG=", "FCVM_PLUGIN_PATH="};
    UniqueFd out_fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    UniqueFd err_fd(::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    opts.stdout_fd = out_fd.get();
    opts.stderr_fd = err_fd.get();
    return ChildProcess::spawn(opts).value();
  }

  // A record with its own id, so that its directory can be vms/<id> as fcvm makes them.
  VmRecord make_record_with_id(const std::string& name, ProcessIdentity process) {
    VmRecord r = make_record(name, process);
    char id[13];
    std::snprintf(id, sizeof id, "%012llx", 0xabc000000ull + next_id_++);
    r.id = id;
    r.vm_dir = data_dir_ / "vms" / r.id;
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
  unsigned next_id_ = 0;
};

TEST_F(StateCommandsTest, LsShowsLiveAndDeadRecords) {
  StateStore store(data_dir_);
  auto live = store.create(make_record("live-one", ProcessIdentity::self()));
  auto dead = store.create(make_record("dead-one", dead_identity()));
  ASSERT_TRUE(live.ok() && dead.ok());

  CliRun running = fcvm({"--data-dir", data_dir_.string(), "ls"});
  ASSERT_EQ(running.code, 0) << running.err;
  EXPECT_NE(running.out.find("live-one"), std::string::npos) << running.out;
  EXPECT_EQ(running.out.find("dead-one"), std::string::npos) << "without -a, only live ones";

  CliRun table = fcvm({"--data-dir", data_dir_.string(), "ls", "-a"});
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

  CliRun as_json = fcvm({"ls", "-a", "--json", "--data-dir", data_dir_.string()});
  ASSERT_EQ(as_json.code, 0) << as_json.err;
  const json all = json::parse(as_json.out);
  ASSERT_EQ(all.size(), 2u);
  for (const auto& j : all) {
    EXPECT_EQ(j["alive"], j["name"] == "live-one") << j.dump();
    EXPECT_TRUE(vm_record_from_json(j).ok());
  }

  CliRun by_name = fcvm({"--data-dir", data_dir_.string(), "ls", "-a", "--json", "--name", "dead-one"});
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
  auto live = make_record_with_id("alive", ProcessIdentity::self());
  fs::create_directories(live.vm_dir);
  auto dead = make_record_with_id("gone", dead_identity());
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
  auto rec = make_record_with_id("orphan", dead_identity());
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
  EXPECT_NE(r.err.find("is not a VM directory of the data dir"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(rec.vm_dir));
  EXPECT_TRUE(store.get(created->id).ok());
}

// A planted record names files outside its own VM directory: gc deletes none of them,
// says why, and keeps the record.
TEST_F(StateCommandsTest, GcDeletesNothingARecordNamesOutsideItsVmDir) {
  const fs::path outside = tmp_ / "outside";
  fs::create_directories(outside);
  std::ofstream(tmp_ / "victim") << "root's file";
  std::ofstream(outside / "victim2") << "root's file";
  StateStore store(data_dir_);
  std::vector<std::string> ids;
  auto plant = [&](const std::string& name, const std::function<fs::path(const fs::path& vm_dir)>& drive_path) {
    auto created = store.create(make_record(name, dead_identity()));
    ASSERT_TRUE(created.ok());
    ids.push_back(created->id);
    const fs::path vm_dir = data_dir_ / "vms" / created->id;
    fs::create_directories(vm_dir);
    const fs::path path = drive_path(vm_dir);
    ASSERT_TRUE(store.update(created->id, [&](VmRecord& r) {
      r.vm_dir = vm_dir;
      r.disk = DiskLease{"storage-squashfs", {Drive{"scratch", path, false}}, {}, nlohmann::json::object()};
      return ok_status();
    }).ok());
  };
  plant("absolute", [&](const fs::path&) { return tmp_ / "victim"; });
  plant("dotdot", [&](const fs::path& d) { return d / ".." / ".." / ".." / "victim"; });
  plant("symlinked", [&](const fs::path& d) {
    fs::create_symlink(outside, d / "link");
    return d / "link" / "victim2";
  });
  plant("other-vm", [&](const fs::path&) { return data_dir_ / "vms" / ids.front() / "x"; });
  plant("relative", [&](const fs::path&) { return fs::path("victim"); });  // gc's cwd is not the VM's
  fs::create_directories(data_dir_ / "images");
  std::ofstream(data_dir_ / "images" / "refs.json") << "{}";
  auto flagged = store.create(make_record("read-only-flag", dead_identity()));
  ASSERT_TRUE(flagged.ok());
  ids.push_back(flagged->id);
  ASSERT_TRUE(store.update(flagged->id, [&](VmRecord& r) {
    r.vm_dir = data_dir_ / "vms" / flagged->id;
    // Marked read-only, but the plugin deletes its scratch drive by id.
    r.disk = DiskLease{"storage-squashfs", {Drive{"scratch", data_dir_ / "images" / "refs.json", true}}, {}, nlohmann::json::object()};
    return ok_status();
  }).ok());
  // A record naming another directory of the data dir as its own.
  auto state_dir = store.create(make_record("state-as-vm-dir", dead_identity()));
  ASSERT_TRUE(state_dir.ok());
  ids.push_back(state_dir->id);
  ASSERT_TRUE(store.update(state_dir->id, [&](VmRecord& r) {
    r.vm_dir = data_dir_ / "state";
    return ok_status();
  }).ok());
  CliRun r = fcvm({"--data-dir", data_dir_.string(), "gc"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(fs::exists(tmp_ / "victim"));
  EXPECT_TRUE(fs::exists(outside / "victim2"));
  EXPECT_TRUE(fs::exists(data_dir_ / "images" / "refs.json"));
  for (const auto& id : ids) EXPECT_TRUE(store.get(id).ok()) << id;
  EXPECT_NE(r.err.find("is not beneath"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("through a symlink"), std::string::npos) << r.err;
}

// vms/ swapped for a symlink to elsewhere: gc refuses the data dir and follows nothing.
TEST_F(StateCommandsTest, GcRefusesADataDirWhoseVmsDirIsASymlink) {
  StateStore store(data_dir_);
  auto created = store.create(make_record("moved", dead_identity()));
  ASSERT_TRUE(created.ok());
  const fs::path elsewhere = tmp_ / "elsewhere";
  fs::create_directories(elsewhere / created->id);
  std::ofstream(elsewhere / created->id / "keep") << "x";
  fs::remove_all(data_dir_ / "vms");
  fs::create_symlink(elsewhere, data_dir_ / "vms");
  ASSERT_TRUE(store.update(created->id, [&](VmRecord& r) {
    r.vm_dir = data_dir_ / "vms" / created->id;
    return ok_status();
  }).ok());
  CliRun r = fcvm({"--data-dir", data_dir_.string(), "gc"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("vms is not a directory"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(elsewhere / created->id / "keep"));
}

// Destructive commands run only in a data dir the caller controls.
TEST_F(StateCommandsTest, DestructiveCommandsRefuseADataDirOthersControl) {
  StateStore store(data_dir_);
  auto created = store.create(make_record("kept", dead_identity()));
  ASSERT_TRUE(created.ok());
  const std::vector<std::vector<std::string>> commands = {
      {"gc"}, {"rm", "kept"}, {"snapshot", "rm", "x"}, {"image", "rm", "x"}};
  auto refused_by_all = [&](const std::string& why) {
    for (auto args : commands) {
      args.insert(args.begin(), {"--data-dir", data_dir_.string()});
      CliRun r = fcvm(args);
      EXPECT_NE(r.code, 0) << args[2];
      EXPECT_NE(r.err.find(why), std::string::npos) << args[2] << ": " << r.err;
    }
    EXPECT_TRUE(store.get(created->id).ok());
  };
  ASSERT_EQ(::chmod(data_dir_.c_str(), 0777), 0);
  refused_by_all("is writable by others (mode 0777)");
  ASSERT_EQ(::chmod(data_dir_.c_str(), 0700), 0);
  ASSERT_EQ(::chmod((data_dir_ / "state").c_str(), 0770), 0);
  refused_by_all("state is writable by others (mode 0770)");
  ASSERT_EQ(::chmod((data_dir_ / "state").c_str(), 0700), 0);
  if (::geteuid() != 0) {
    std::cout << "SKIPPED part: a data dir owned by another user needs root to chown\n";
    return;
  }
  ASSERT_EQ(::chown(data_dir_.c_str(), 65534, 65534), 0);
  refused_by_all("belongs to uid 65534, not to you (uid 0)");
  ASSERT_EQ(::chown(data_dir_.c_str(), 0, 0), 0);
  CliRun ok = fcvm({"--data-dir", data_dir_.string(), "gc"});
  EXPECT_EQ(ok.code, 0) << ok.err;
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

// Capabilities come from the real backends, created through the loader.
TEST_F(StateCommandsTest, PluginsShowEachBackendsCapabilities) {
  CliRun r = fcvm({"--data-dir", data_dir_.string(), "plugins", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::map<std::string, json> by_name;
  for (const auto& p : json::parse(r.out)) {
    if (p.contains("name")) by_name[p["name"]] = p;
  }
  ASSERT_TRUE(by_name.count("vmm-qemu")) << r.out;
  EXPECT_EQ(by_name["vmm-qemu"]["capabilities"], json({{"snapshot", true},
                                                       {"restore_file_memory", true},
                                                       {"restore_uffd_memory", true},
                                                       {"dirty_page_tracking", false},
                                                       {"mmds", false},
                                                       {"agent_transport", "virtio_serial"}}));
  ASSERT_TRUE(by_name.count("file")) << r.out;
  EXPECT_EQ(by_name["file"]["capabilities"], json({{"needs_server", false},
                                                   {"source_kind", "file"},
                                                   {"adopts_clients", false},
                                                   {"prefetch", false}}));
  ASSERT_TRUE(by_name.count("memory-uffd")) << r.out;
  EXPECT_EQ(by_name["memory-uffd"]["capabilities"], json({{"needs_server", true},
                                                          {"source_kind", "uffd"},
                                                          {"adopts_clients", true},
                                                          {"prefetch", true}}));
  // A kind whose interface declares no capabilities shows an empty object.
  ASSERT_TRUE(by_name.count("storage-squashfs")) << r.out;
  EXPECT_EQ(by_name["storage-squashfs"]["capabilities"], json::object());
  if (by_name.count("vmm-firecracker")) {
    const json& fc = by_name["vmm-firecracker"]["capabilities"];
    EXPECT_EQ(fc["mmds"], true) << fc.dump();
    EXPECT_EQ(fc["dirty_page_tracking"], true) << fc.dump();
    EXPECT_EQ(fc["agent_transport"], "vsock") << fc.dump();
  }

  CliRun table = fcvm({"--data-dir", data_dir_.string(), "plugins"});
  ASSERT_EQ(table.code, 0) << table.err;
  std::istringstream lines(table.out);
  std::string header;
  std::getline(lines, header);
  EXPECT_NE(header.find("CAPABILITIES"), std::string::npos) << header;
  std::map<std::string, std::string> row_of;
  for (std::string line; std::getline(lines, line);) {
    row_of[line.substr(0, line.find(' '))] = line;
  }
  EXPECT_NE(row_of["vmm-qemu"].find(" snapshot,restore-file,restore-uffd,agent-virtio-serial "),
            std::string::npos)
      << table.out;
  EXPECT_NE(row_of["memory-uffd"].find(" uffd,server,adopt,prefetch "), std::string::npos)
      << table.out;
  EXPECT_NE(row_of["file"].find(" file "), std::string::npos) << table.out;
  EXPECT_NE(row_of["storage-squashfs"].find(" - "), std::string::npos) << table.out;
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

// A damaged record does not block ls or gc: it is skipped with a warning naming the file.
TEST_F(StateCommandsTest, LsAndGcSkipAnUnparsableRecord) {
  StateStore store(data_dir_);
  auto good = store.create(make_record("good", dead_identity()));
  ASSERT_TRUE(good.ok());
  const fs::path bad = data_dir_ / "state" / "0123456789ab.json";
  std::ofstream(bad) << "{\"version\": 1, \"id\": \"0123";

  CliRun ls = fcvm({"--data-dir", data_dir_.string(), "ls", "-a", "--json"});
  ASSERT_EQ(ls.code, 0) << ls.err;
  EXPECT_EQ(json::parse(ls.out).size(), 1u);
  EXPECT_NE(ls.err.find("warning: skipping state record " + bad.string() + ": not valid JSON"),
            std::string::npos)
      << ls.err;
  EXPECT_NE(ls.err.find("move it out of " + (data_dir_ / "state").string()), std::string::npos)
      << ls.err;
  EXPECT_EQ(ls.err.find("json.exception"), std::string::npos) << ls.err;

  CliRun gc = fcvm({"--data-dir", data_dir_.string(), "gc"});
  EXPECT_EQ(gc.code, 0) << gc.err;
  EXPECT_EQ(store.get(good->id).status().code(), Errc::not_found);
  EXPECT_TRUE(fs::exists(bad)) << "gc must not delete what it cannot read";
}

// Temp files of a state writer killed mid-write are swept by gc.
TEST_F(StateCommandsTest, GcSweepsStaleTempFiles) {
  StateStore store(data_dir_);
  auto rec = store.create(make_record("live", ProcessIdentity::self()));
  ASSERT_TRUE(rec.ok());
  const fs::path stale = data_dir_ / "state" /
                         ("." + rec->id + ".json.tmp." + std::to_string(dead_identity().pid) + ".1");
  std::ofstream(stale) << "{\"half";
  CliRun gc = fcvm({"--data-dir", data_dir_.string(), "gc"});
  EXPECT_EQ(gc.code, 0) << gc.err;
  EXPECT_EQ(gc.out, "removed 1 stale temp file in " + (data_dir_ / "state").string() + "\n");
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(store.get(rec->id).ok());
}

// Two gc runs at once: no warnings, exit 0 both, and every dead record is collected exactly
// once between them.
TEST_F(StateCommandsTest, ConcurrentGcRunsAreSafe) {
  constexpr int kRecords = 40;
  StateStore store(data_dir_);
  std::set<std::string> ids;
  for (int i = 0; i < kRecords; ++i) {
    auto r = make_record_with_id("dead-" + std::to_string(i), dead_identity());
    for (int f = 0; f < 50; ++f) {
      fs::create_directories(r.vm_dir / std::to_string(f % 5));
      std::ofstream(r.vm_dir / std::to_string(f % 5) / std::to_string(f)) << f;
    }
    auto created = store.create(r);
    ASSERT_TRUE(created.ok());
    ids.insert(created->id);
  }
  std::vector<ChildProcess> runs;
  std::vector<fs::path> outs, errs;
  for (int i = 0; i < 2; ++i) {
    outs.push_back(tmp_ / ("gc" + std::to_string(i) + ".out"));
    errs.push_back(tmp_ / ("gc" + std::to_string(i) + ".err"));
    runs.push_back(start_fcvm({"--data-dir", data_dir_.string(), "gc", "--json"}, outs[i], errs[i]));
  }
  std::multiset<std::string> removed;
  for (int i = 0; i < 2; ++i) {
    auto st = runs[i].wait(std::chrono::milliseconds(120000));
    ASSERT_TRUE(st.has_value());
    const std::string err = read_file(errs[i]).value();
    EXPECT_EQ(st->code, 0) << err;
    EXPECT_EQ(err, "");
    const json out = json::parse(read_file(outs[i]).value());
    EXPECT_TRUE(out["kept"].empty()) << out.dump();
    for (const auto& r : out["removed"]) removed.insert(r["id"].get<std::string>());
  }
  EXPECT_EQ(removed, std::multiset<std::string>(ids.begin(), ids.end()));
  EXPECT_TRUE(store.list()->empty());
}

// exec's exit code is the command's: its own errors are podman's 125, never 1 or 2.
TEST_F(StateCommandsTest, ExecErrorsOfItsOwnExit125) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"exec", "nosuch", "true"}, std::vector<std::string>{"exec"},
        std::vector<std::string>{"exec", "--no-such-flag", "x", "true"}}) {
    std::vector<std::string> full = {"--data-dir", data_dir_.string()};
    full.insert(full.end(), args.begin(), args.end());
    CliRun r = fcvm(full);
    EXPECT_EQ(r.code, 125) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  StateStore store(data_dir_);
  ASSERT_TRUE(store.create(make_record("ended", dead_identity())).ok());
  CliRun ended = fcvm({"--data-dir", data_dir_.string(), "exec", "ended", "true"});
  EXPECT_EQ(ended.code, 125);
  EXPECT_NE(ended.err.find("ended is not running"), std::string::npos) << ended.err;
}

TEST_F(StateCommandsTest, StopTimeIsRangeChecked) {
  StateStore store(data_dir_);
  ASSERT_TRUE(store.create(make_record("target", dead_identity())).ok());
  for (const char* t : {"700", "4294968", "-1"}) {
    CliRun r = fcvm({"--data-dir", data_dir_.string(), "stop", "--time=" + std::string(t), "target"});
    EXPECT_EQ(r.code, 2) << t;
    EXPECT_EQ(r.err, "fcvm: --time " + std::string(t) + ": must be between 0 and 600 seconds\n");
  }
  CliRun ok = fcvm({"--data-dir", data_dir_.string(), "stop", "-t", "600", "target"});
  EXPECT_EQ(ok.code, 0) << ok.err;
}

TEST_F(StateCommandsTest, LookupErrorsSayOnceWhereToLook) {
  CliRun r = fcvm({"--data-dir", data_dir_.string(), "stop", "nosuch"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "fcvm: no VM named or with id 'nosuch' (see 'fcvm ls')\n");
}

// Choices of plugins that do not exist fail before anything runs, naming what exists.
TEST_F(StateCommandsTest, UnknownPluginChoicesAndDirsAreRefused) {
  const std::string image = "oci:/nonexistent/layout:x";
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--plugin", "memory=nosuch"},
        std::vector<std::string>{"--memory", "nosuch"}}) {
    std::vector<std::string> args = {"--data-dir", data_dir_.string()};
    args.insert(args.end(), flags.begin(), flags.end());
    args.insert(args.end(), {"podman", "run", image});
    CliRun r = fcvm(args);
    EXPECT_EQ(r.code, 125) << r.err;  // under `fcvm podman`, podman's code for its own errors
    EXPECT_NE(r.err.find("fcvm: --plugin memory=nosuch: no plugin named 'nosuch'; memory plugins "
                         "here: file"),
              std::string::npos)
        << r.err;
  }
  CliRun vmm_as_storage =
      fcvm({"--data-dir", data_dir_.string(), "--storage", "file", "podman", "run", image});
  EXPECT_EQ(vmm_as_storage.code, 125);
  EXPECT_NE(vmm_as_storage.err.find("--plugin storage=file: 'file' is a memory plugin"),
            std::string::npos)
      << vmm_as_storage.err;

  CliRun dir = fcvm({"--data-dir", data_dir_.string(), "--plugin-dir", "/nonexistent", "ls"});
  EXPECT_EQ(dir.code, 1);
  EXPECT_EQ(dir.err, "fcvm: --plugin-dir /nonexistent: no such directory; pass a directory that "
                     "holds fcvm plugins (fcvm-*.so)\n");
}

// Guest RAM is a file in the data dir: a run that cannot fit is refused before anything
// is created, with how much there is and what to do.
TEST_F(StateCommandsTest, RunWithoutRoomForTheGuestIsRefused) {
  CliRun huge = fcvm({"--data-dir", data_dir_.string(), "podman", "run", "-m", "1024g",
                      "oci:/nonexistent/layout:x"});
  EXPECT_EQ(huge.code, 125);
  EXPECT_NE(huge.err.find("not enough host memory for the guest"), std::string::npos) << huge.err;
  EXPECT_NE(huge.err.find("lower --memory"), std::string::npos) << huge.err;

  if (::geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root";
  const fs::path small = tmp_ / "small";
  fs::create_directories(small);
  ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=64m"), 0) << std::strerror(errno);
  CliRun full = fcvm({"--data-dir", small.string(), "podman", "run", "-m", "256",
                      "oci:/nonexistent/layout:x"});
  EXPECT_EQ(full.code, 125);
  EXPECT_NE(full.err.find("not enough free space in " + small.string() +
                          " for the guest's RAM file"),
            std::string::npos)
      << full.err;
  EXPECT_NE(full.err.find("pass --data-dir on a larger filesystem"), std::string::npos);
  EXPECT_FALSE(fs::exists(small / "vms"));
  EXPECT_FALSE(fs::exists(small / "state"));
  ASSERT_EQ(::umount(small.c_str()), 0) << std::strerror(errno);

  CliRun tiny = fcvm({"--data-dir", data_dir_.string(), "podman", "run", "-m", "16m",
                      "oci:/nonexistent/layout:x"});
  EXPECT_EQ(tiny.code, 125);
  EXPECT_EQ(tiny.err, "fcvm: --memory '16m': out of range; the guest needs 64 MiB to 1048576 MiB "
                      "(e.g. 256m, 2g)\n");
}

TEST_F(StateCommandsTest, RmRemovesAnEndedVmAndRefusesARunningOne) {
  StateStore store(data_dir_);
  auto dead = make_record_with_id("ended", dead_identity());
  fs::create_directories(dead.vm_dir);
  std::ofstream(dead.vm_dir / "container.log") << "bye\n";
  auto created = store.create(dead);
  auto live = store.create(make_record("running", ProcessIdentity::self()));
  ASSERT_TRUE(created.ok() && live.ok());

  CliRun refused = fcvm({"--data-dir", data_dir_.string(), "rm", "running"});
  EXPECT_EQ(refused.code, 1);
  EXPECT_EQ(refused.err, "fcvm: running is running; stop it first ('fcvm stop running') or use "
                         "'fcvm rm --force'\n");
  EXPECT_TRUE(store.get(live->id).ok());

  CliRun rm = fcvm({"--data-dir", data_dir_.string(), "rm", created->id});
  EXPECT_EQ(rm.code, 0) << rm.err;
  EXPECT_EQ(rm.out, "ended\n");
  EXPECT_FALSE(fs::exists(dead.vm_dir));
  EXPECT_EQ(store.get(created->id).status().code(), Errc::not_found);
}

}  // namespace
}  // namespace fcvm
