#include "state/vm_record.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>

namespace fcvm {
namespace {

VmRecord full_record() {
  VmRecord r;
  r.id = "0123456789ab";
  r.name = "web1";
  r.type = VmType::clone;
  r.process = {1234, 5678};
  r.serve = ProcessIdentity{99, 100};
  r.vmm = ProcessIdentity{1235, 5679};
  r.snapshot = "snap1";
  r.image = "docker.io/library/nginx:latest";
  r.plugins = {{PluginKind::vmm, "vmm-qemu"}, {PluginKind::network, "network-slirp"}};
  NetworkLease net;
  net.plugin = "network-slirp";
  net.namespaces = {"/proc/1/ns/user", "/proc/1/ns/net"};
  net.tap = "tap0";
  net.guest.address = "10.0.2.15/24";
  net.ports = {PortMapping{"tcp", "127.0.0.1", 8080, 80}};
  net.extra = {{"slirp_pid", 77}};
  r.network = net;
  DiskLease disk;
  disk.plugin = "storage-squashfs";
  disk.drives = {Drive{"root", "/var/lib/fcvm/vms/x/root.sqfs", true}};
  disk.root.mode = RootPlan::Mode::overlay;
  r.disk = disk;
  r.vm_dir = "/var/lib/fcvm/vms/0123456789ab";
  r.created = "2024-05-01T12:00:00Z";
  r.status = VmStatus::exited;
  r.exit_code = 3;
  r.error = "the VM stopped before the container exited";
  r.extra = {{"later", true}};
  r.health = HealthState{HealthStatus::unhealthy, 3, "exit code 1: boom", "2024-05-01T12:00:09Z"};
  r.paused = true;
  return r;
}

TEST(VmRecord, JsonRoundTripKeepsEveryField) {
  const VmRecord r = full_record();
  const auto j = to_json(r);
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["pid"], 1234);
  EXPECT_EQ(j["pid_start_time"], 5678);
  EXPECT_EQ(j["serve_pid"], 99);
  EXPECT_EQ(j["serve_pid_start_time"], 100);
  EXPECT_EQ(j["vmm_pid"], 1235);
  EXPECT_EQ(j["vmm_pid_start_time"], 5679);
  EXPECT_EQ(j["plugins"]["vmm"], "vmm-qemu");
  EXPECT_EQ(j["status"], "exited");
  EXPECT_EQ(j["type"], "clone");

  auto back = vm_record_from_json(j);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(to_json(*back), j);
  EXPECT_EQ(back->serve, r.serve);
  EXPECT_EQ(back->vmm, r.vmm);
  EXPECT_EQ(back->network->ports.at(0).host_port, 8080);
  EXPECT_EQ(back->disk->drives.at(0).path, "/var/lib/fcvm/vms/x/root.sqfs");
  EXPECT_EQ(back->exit_code, 3);
  EXPECT_EQ(back->error, r.error);
  EXPECT_EQ(j["health"]["status"], "unhealthy");
  EXPECT_EQ(back->health, r.health);
  EXPECT_TRUE(back->paused);
}

TEST(VmRecord, OptionalPartsMayBeAbsent) {
  VmRecord r;
  r.id = "aaaaaaaaaaaa";
  r.name = "x";
  r.process = {1, 2};
  const auto j = to_json(r);
  EXPECT_TRUE(j["network"].is_null());
  EXPECT_TRUE(j["disk"].is_null());
  EXPECT_TRUE(j["serve_pid"].is_null());
  EXPECT_TRUE(j["vmm_pid"].is_null());
  EXPECT_TRUE(j["exit_code"].is_null());
  EXPECT_TRUE(j["health"].is_null());
  auto back = vm_record_from_json(j);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_FALSE(back->network);
  EXPECT_FALSE(back->disk);
  EXPECT_FALSE(back->serve);
  EXPECT_FALSE(back->vmm);
  EXPECT_FALSE(back->exit_code);
  EXPECT_FALSE(back->health);
  auto older = j;
  older.erase("paused");  // records written before the field existed
  EXPECT_FALSE(vm_record_from_json(older)->paused);
}

TEST(VmRecord, RefusesNewerAndMissingVersions) {
  auto j = to_json(full_record());
  j["version"] = 2;
  auto newer = vm_record_from_json(j);
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.status().message(),
            "written by a newer fcvm (record version 2, this fcvm reads up to 1); use that fcvm "
            "or upgrade this one");
  j.erase("version");
  auto missing = vm_record_from_json(j);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "field 'version' is missing");
}

TEST(VmRecord, WrongFieldsAreNamed) {
  auto j = to_json(full_record());
  j["pid"] = "twelve";
  auto r = vm_record_from_json(j);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().rfind("field 'pid': ", 0), 0u) << r.status().message();
  EXPECT_EQ(r.status().message().find("json.exception"), std::string::npos) << r.status().message();

  j = to_json(full_record());
  j["status"] = "sleeping";
  EXPECT_EQ(vm_record_from_json(j).status().message(), "field 'status': unknown status 'sleeping'");

  j = to_json(full_record());
  j["health"]["status"] = "fine";
  EXPECT_EQ(vm_record_from_json(j).status().message(), "field 'health': unknown status 'fine'");
  j["health"] = {{"status", "healthy"}, {"failing_streak", -1}};
  EXPECT_EQ(vm_record_from_json(j).status().message(), "field 'health': 'failing_streak' must be a number >= 0");

  j = to_json(full_record());
  j["id"] = "../../etc";
  EXPECT_EQ(vm_record_from_json(j).status().message(), "bad id '../../etc'");
}

TEST(VmRecord, RootModeIsTypedAndAnUnknownOneIsRefused) {
  auto j = to_json(full_record());
  EXPECT_EQ(j["disk"]["root"]["mode"], "overlay");
  j["disk"]["root"]["mode"] = "zfs";
  auto refused = vm_record_from_json(j);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("root mode must be \"direct\" or \"overlay\", not \"zfs\""),
            std::string::npos)
      << refused.status().message();
}

TEST(VmName, ValidationTable) {
  const std::pair<std::string, bool> cases[] = {
      {"web1", true},
      {"a", true},
      {"0", true},
      {"my_vm.v2-test", true},
      {std::string(63, 'a'), true},
      {std::string(64, 'a'), false},
      {"", false},
      {"../x", false},
      {"a/b", false},
      {".hidden", false},
      {"-dash", false},
      {"_under", false},
      {"Web1", false},
      {"wEb", false},
      {"a b", false},
      {"a\nb", false},
      {"caf\xc3\xa9", false},
  };
  for (const auto& [name, ok] : cases) {
    EXPECT_EQ(validate_vm_name(name).ok(), ok) << "'" << name << "'";
  }
  const Status st = validate_vm_name("a/b");
  EXPECT_EQ(st.code(), Errc::invalid_argument);
  EXPECT_EQ(st.message(), "invalid name 'a/b': '/' is not allowed; a name is 1-63 characters "
                          "from a-z, 0-9, '_', '.', '-', starting with a letter or digit");
}

TEST(VmName, GeneratedNamesAndIdsAreValidAndVary) {
  std::set<std::string> ids, names;
  const std::regex name_shape("fcvm-[0-9a-f]{6}");
  for (int i = 0; i < 50; ++i) {
    const auto id = random_vm_id();
    const auto name = random_vm_name();
    EXPECT_TRUE(is_valid_vm_id(id)) << id;
    EXPECT_TRUE(std::regex_match(name, name_shape)) << name;
    EXPECT_TRUE(validate_vm_name(name).ok()) << name;
    ids.insert(id);
    names.insert(name);
  }
  EXPECT_GT(ids.size(), 45u);
  EXPECT_GT(names.size(), 45u);
  EXPECT_FALSE(is_valid_vm_id("0123456789AB"));
  EXPECT_FALSE(is_valid_vm_id("0123456789a"));
}

TEST(VmRecord, CreatedTimeIsRfc3339Utc) {
  EXPECT_TRUE(std::regex_match(now_rfc3339(),
                               std::regex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")));
}

}  // namespace
}  // namespace fcvm
