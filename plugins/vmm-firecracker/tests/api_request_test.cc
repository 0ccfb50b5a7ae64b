// Contract: every request the plugin can send validates against its operation's schema in
// Firecracker's API description (firecracker.yaml), and the request builders keep the
// rules the description states in prose (ids, order, root device, MMDS needs a NIC).
#include <gtest/gtest.h>

#include <filesystem>

#include "api_request.h"
#include "swagger_validator.h"

namespace fcvm::firecracker {
namespace {

using nlohmann::json;
using testing::SwaggerValidator;

class ApiContract : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::filesystem::path yaml = FCVM_FIRECRACKER_API_YAML;
    if (yaml.empty() || !std::filesystem::exists(yaml)) {
      GTEST_SKIP() << "firecracker.yaml not found beside the repository (shared/firecracker/); "
                      "reconfigure with -DFCVM_FIRECRACKER_API_YAML=PATH";
    }
    api_ = SwaggerValidator::load(yaml);
  }

  // Checks that `request` names an operation of the description, that its concrete path
  // matches the template, and that its body conforms.
  void expect_valid(const ApiRequest& request) {
    SCOPED_TRACE(request.describe() + " " + request.body.dump());
    auto matched = api_.match_path(request.path);
    ASSERT_TRUE(matched.has_value()) << "no path of the description matches " << request.path;
    EXPECT_EQ(*matched, request.path_template);
    auto problems = api_.check_request(request.method, request.path_template, request.body);
    for (const auto& p : problems) ADD_FAILURE() << p;
    ++checked_;
  }

  SwaggerValidator api_;
  int checked_ = 0;
};

VmSpec full_spec() {
  VmSpec spec;
  spec.name = "web1";
  spec.dir = "/var/lib/fcvm/vms/abc";
  spec.vcpus = 2;
  spec.memory_mib = 512;
  spec.kernel = "/var/lib/fcvm/kernel/vmlinux";
  spec.initrd = "/var/lib/fcvm/initramfs.cpio.gz";
  spec.cmdline = "console=ttyS0 quiet panic=-1";
  spec.drives = {{"root", "/var/lib/fcvm/storage/base.sqfs", true},
                 {"scratch", "/var/lib/fcvm/vms/abc/scratch.ext4", false}};
  spec.nics = {{"eth0", "tap0", "02:fc:00:00:00:02"}, {"eth1", "tap1", ""}};
  spec.agent_socket = "/var/lib/fcvm/vms/abc/agent.sock";
  spec.console_log = "/var/lib/fcvm/vms/abc/console.log";
  spec.mmds = {{"fcvm", {{"plan", {{"argv", {"/bin/sh"}}}}}}};
  return spec;
}

RestoreSpec restore_spec(MemorySourceKind kind, bool resume) {
  RestoreSpec r;
  r.vm = full_spec();
  r.vm.dir = "/var/lib/fcvm/vms/clone1";
  r.vm.agent_socket = "/var/lib/fcvm/vms/clone1/agent.sock";
  r.snapshot = {"/var/lib/fcvm/snapshots/s1/state", "/var/lib/fcvm/snapshots/s1/mem"};
  r.memory = {kind, kind == MemorySourceKind::uffd ? "/run/fcvm/s1.uffd.sock" : "/var/lib/fcvm/vms/clone1/mem"};
  r.resume = resume;
  return r;
}

FirecrackerOptions diff_options() {
  FirecrackerOptions o;
  o.snapshot_type = SnapshotType::diff;
  return o;
}

TEST_F(ApiContract, EveryBootSequenceValidates) {
  for (const auto& options : {FirecrackerOptions{}, diff_options()}) {
    for (bool with_initrd : {true, false}) {
      for (bool with_mmds : {true, false}) {
        for (bool with_nics : {true, false}) {
          VmSpec spec = full_spec();
          if (!with_initrd) spec.initrd.clear();
          if (!with_mmds) spec.mmds = nullptr;
          if (!with_nics) {
            spec.nics.clear();
            spec.mmds = nullptr;
          }
          auto requests = FirecrackerRequests::boot(spec, options);
          ASSERT_TRUE(requests.ok()) << requests.status().message();
          for (const auto& r : *requests) expect_valid(r);
        }
      }
    }
  }
}

TEST_F(ApiContract, EveryRestoreSequenceValidates) {
  for (auto kind : {MemorySourceKind::file, MemorySourceKind::uffd}) {
    for (bool resume : {true, false}) {
      for (const auto& options : {FirecrackerOptions{}, diff_options()}) {
        RestoreSpec spec = restore_spec(kind, resume);
        auto requests = FirecrackerRequests::restore(spec, options);
        ASSERT_TRUE(requests.ok()) << requests.status().message();
        for (const auto& r : *requests) expect_valid(r);
        spec.vm.nics.clear();  // no network_overrides at all
        auto bare = FirecrackerRequests::restore(spec, options);
        ASSERT_TRUE(bare.ok());
        for (const auto& r : *bare) expect_valid(r);
      }
    }
  }
}

TEST_F(ApiContract, EveryRuntimeRequestValidates) {
  expect_valid(FirecrackerRequests::pause());
  expect_valid(FirecrackerRequests::resume());
  expect_valid(FirecrackerRequests::send_ctrl_alt_del());
  expect_valid(FirecrackerRequests::instance_start());
  expect_valid(FirecrackerRequests::describe_instance());
  expect_valid(FirecrackerRequests::version());
  for (auto type : {SnapshotType::full, SnapshotType::diff}) {
    expect_valid(FirecrackerRequests::snapshot_create("/s/state.tmp", "/s/mem.tmp", type));
  }
  EXPECT_EQ(checked_, 8);
}

TEST_F(ApiContract, ValidatorCatchesBadBodies) {
  // The negative control: if these passed, the contract tests above would prove nothing.
  auto bad = [&](const std::string& method, const std::string& tmpl, const json& body) {
    return !api_.check_request(method, tmpl, body).empty();
  };
  EXPECT_TRUE(bad("PUT", "/machine-config", {{"vcpu_count", 2}}));  // mem_size_mib missing
  EXPECT_TRUE(bad("PUT", "/machine-config", {{"vcpu_count", "2"}, {"mem_size_mib", 256}}));  // type
  EXPECT_TRUE(bad("PUT", "/machine-config", {{"vcpu_count", 33}, {"mem_size_mib", 256}}));  // maximum
  EXPECT_TRUE(bad("PUT", "/machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 256}, {"cpus", 1}}));
  EXPECT_TRUE(bad("PATCH", "/vm", {{"state", "Stopped"}}));  // enum
  EXPECT_TRUE(bad("PUT", "/snapshot/create",
                  {{"snapshot_path", "s"}, {"mem_file_path", "m"}, {"snapshot_type", "Incremental"}}));
  EXPECT_TRUE(bad("PUT", "/snapshot/load",
                  {{"snapshot_path", "s"}, {"mem_backend", {{"backend_type", "File"}}}}));  // nested required
  EXPECT_TRUE(bad("PUT", "/snapshot/load",
                  {{"snapshot_path", "s"}, {"network_overrides", {{{"iface_id", "eth0"}}}}}));  // array item
  EXPECT_TRUE(bad("PUT", "/vsock", {{"guest_cid", 2}, {"uds_path", "v.sock"}}));  // minimum 3
  EXPECT_TRUE(bad("PUT", "/actions", nullptr));  // required body
  EXPECT_TRUE(bad("GET", "/version", {{"x", 1}}));  // no body allowed
  EXPECT_TRUE(bad("PUT", "/nonexistent", {{"x", 1}}));
  // And a good body passes, additionalProperties: true included.
  EXPECT_FALSE(bad("PUT", "/mmds", {{"anything", {{"goes", 1}}}}));
  EXPECT_FALSE(bad("PUT", "/vsock", {{"guest_cid", 3}, {"uds_path", "v.sock"}}));
}

TEST(FirecrackerRequests, BootOrderAndContent) {
  auto requests = FirecrackerRequests::boot(full_spec(), {});
  ASSERT_TRUE(requests.ok()) << requests.status().message();
  std::vector<std::string> calls;
  for (const auto& r : *requests) calls.push_back(r.describe());
  EXPECT_EQ(calls, (std::vector<std::string>{
                       "PUT /logger", "PUT /metrics", "PUT /machine-config", "PUT /boot-source",
                       "PUT /drives/root", "PUT /drives/scratch", "PUT /network-interfaces/eth0",
                       "PUT /network-interfaces/eth1", "PUT /mmds/config", "PUT /mmds", "PUT /vsock",
                       "PUT /entropy", "PUT /actions"}));
  const auto& r = *requests;
  EXPECT_EQ(r[0].body["log_path"], "/var/lib/fcvm/vms/abc/firecracker.log");
  EXPECT_EQ(r[1].body["metrics_path"], "/var/lib/fcvm/vms/abc/firecracker.metrics");
  EXPECT_EQ(r[2].body["vcpu_count"], 2);
  EXPECT_EQ(r[2].body["mem_size_mib"], 512);
  EXPECT_EQ(r[2].body["track_dirty_pages"], false);
  EXPECT_EQ(r[3].body["initrd_path"], "/var/lib/fcvm/initramfs.cpio.gz");
  EXPECT_EQ(r[3].body["boot_args"],
            "console=ttyS0 quiet panic=-1 reboot=k fcvm.halt=reboot i8042.noaux i8042.nomux "
            "i8042.dumbkbd");
  // A drive outside the VM dir keeps its absolute path; one inside is relative to it.
  EXPECT_EQ(r[4].body["path_on_host"], "/var/lib/fcvm/storage/base.sqfs");
  EXPECT_EQ(r[4].body["is_read_only"], true);
  EXPECT_EQ(r[5].body["path_on_host"], "scratch.ext4");
  EXPECT_EQ(r[5].body["is_read_only"], false);
  for (int i : {4, 5}) EXPECT_EQ(r[i].body["is_root_device"], false);
  EXPECT_EQ(r[6].body["guest_mac"], "02:fc:00:00:00:02");
  EXPECT_FALSE(r[7].body.contains("guest_mac"));
  EXPECT_EQ(r[8].body["version"], "V2");
  EXPECT_EQ(r[8].body["network_interfaces"], json({"eth0", "eth1"}));
  EXPECT_EQ(r[9].body, full_spec().mmds);
  EXPECT_EQ(r[10].body["guest_cid"], 3);
  EXPECT_EQ(r[10].body["uds_path"], "/var/lib/fcvm/vms/abc/agent.sock");
  EXPECT_EQ(r[11].body, json::object());  // an entropy device, unlimited
  EXPECT_EQ(r[12].body["action_type"], "InstanceStart");
}

TEST(FirecrackerRequests, DiffOptionTurnsOnDirtyPageTracking) {
  auto boot = FirecrackerRequests::boot(full_spec(), diff_options());
  ASSERT_TRUE(boot.ok());
  EXPECT_EQ((*boot)[2].body["track_dirty_pages"], true);
  auto load = FirecrackerRequests::snapshot_load(restore_spec(MemorySourceKind::file, true), diff_options());
  EXPECT_EQ(load.body["track_dirty_pages"], true);
}

TEST(FirecrackerRequests, RestoreLoadsFirstWithOverrides) {
  auto requests = FirecrackerRequests::restore(restore_spec(MemorySourceKind::uffd, false), {});
  ASSERT_TRUE(requests.ok());
  ASSERT_EQ(requests->size(), 3u);
  EXPECT_EQ((*requests)[0].path, "/logger");
  EXPECT_EQ((*requests)[1].path, "/metrics");
  const json& load = (*requests)[2].body;
  EXPECT_EQ((*requests)[2].path, "/snapshot/load");
  EXPECT_EQ(load["snapshot_path"], "/var/lib/fcvm/snapshots/s1/state");
  EXPECT_EQ(load["mem_backend"], json({{"backend_type", "Uffd"}, {"backend_path", "/run/fcvm/s1.uffd.sock"}}));
  EXPECT_EQ(load["resume_vm"], false);
  EXPECT_EQ(load["network_overrides"],
            json::parse(R"([{"iface_id":"eth0","host_dev_name":"tap0"},{"iface_id":"eth1","host_dev_name":"tap1"}])"));
  EXPECT_EQ(load["vsock_override"], json({{"uds_path", "/var/lib/fcvm/vms/clone1/agent.sock"}}));
  EXPECT_FALSE(load.contains("mem_file_path"));  // exactly one of the two mem_* fields

  RestoreSpec file = restore_spec(MemorySourceKind::file, true);
  file.memory.path.clear();  // the snapshot's own image
  auto from_file = FirecrackerRequests::snapshot_load(file, {});
  EXPECT_EQ(from_file.body["mem_backend"],
            json({{"backend_type", "File"}, {"backend_path", "/var/lib/fcvm/snapshots/s1/mem"}}));
}

TEST(FirecrackerRequests, RefusesWhatFirecrackerWouldRefuse) {
  auto refused = [](VmSpec spec, const std::string& fragment) {
    auto r = FirecrackerRequests::boot(spec, {});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Errc::invalid_argument);
    EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
  };
  VmSpec s = full_spec();
  s.vcpus = 33;
  refused(s, "1 to 32 vCPUs");
  s = full_spec();
  s.drives[1].id = "scratch-disk";
  refused(s, "drive id 'scratch-disk'");
  s = full_spec();
  s.nics[0].id = "eth 0";
  refused(s, "network interface id 'eth 0'");
  s = full_spec();
  s.mmds = json::array({1, 2});
  refused(s, "MMDS data must be a JSON object");
  s = full_spec();
  s.nics.clear();
  refused(s, "MMDS is served through a network interface");
  s = full_spec();
  s.mmds = {{"big", std::string(kMaxMmdsBytes, 'x')}};
  refused(s, "Firecracker accepts at most 51200");
  s = full_spec();
  s.agent_socket.clear();
  refused(s, "no agent socket");
}

TEST(FirecrackerRequests, RestoreRefusesAMissingPiece) {
  RestoreSpec r = restore_spec(MemorySourceKind::file, true);
  r.vm.agent_socket.clear();
  EXPECT_FALSE(FirecrackerRequests::restore(r, {}).ok());
  r = restore_spec(MemorySourceKind::uffd, true);
  r.memory.path.clear();
  EXPECT_FALSE(FirecrackerRequests::restore(r, {}).ok());
  r = restore_spec(MemorySourceKind::file, true);
  r.memory.path.clear();
  r.snapshot.memory.clear();
  EXPECT_FALSE(FirecrackerRequests::restore(r, {}).ok());
}

TEST(FirecrackerRequests, BootArgsKeepWhatTheCallerSet) {
  EXPECT_EQ(FirecrackerRequests::boot_args(""),
            "reboot=k fcvm.halt=reboot i8042.noaux i8042.nomux i8042.dumbkbd");
  EXPECT_EQ(FirecrackerRequests::boot_args("console=ttyS0 reboot=t i8042.noaux"),
            "console=ttyS0 reboot=t i8042.noaux fcvm.halt=reboot i8042.nomux i8042.dumbkbd");
  // Firecracker declares its virtio-mmio devices itself: the plugin adds none.
  EXPECT_EQ(FirecrackerRequests::boot_args("a").find("virtio_mmio"), std::string::npos);
}

TEST(FirecrackerRequests, PathForVmm) {
  EXPECT_EQ(FirecrackerRequests::path_for_vmm("/d/vm/disk.ext4", "/d/vm"), "disk.ext4");
  EXPECT_EQ(FirecrackerRequests::path_for_vmm("/d/vm/sub/disk.ext4", "/d/vm/"), "sub/disk.ext4");
  EXPECT_EQ(FirecrackerRequests::path_for_vmm("/d/vm2/disk.ext4", "/d/vm"), "/d/vm2/disk.ext4");
  EXPECT_EQ(FirecrackerRequests::path_for_vmm("/d/base.sqfs", "/d/vm"), "/d/base.sqfs");
  EXPECT_EQ(FirecrackerRequests::path_for_vmm("/d/vm", "/d/vm"), "/d/vm");
}

}  // namespace
}  // namespace fcvm::firecracker
