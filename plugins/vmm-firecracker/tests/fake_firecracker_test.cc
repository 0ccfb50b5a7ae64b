// The real plugin module, loaded as the host loads it (dlopen + the exported descriptor),
// driving fake_firecracker in place of the firecracker binary: the order of API calls for
// boot, pause, snapshot, load and clone; faults; a VMM that dies mid-call; the agent
// channel over the fake's vsock socket. The fake validates every body against
// firecracker.yaml and enforces the description's call-order rules, so a wrong body or
// order fails here as it would against Firecracker.
#include <dlfcn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcvm/agent_plan.h>

#include "fcvm/plugin.h"
#include "fcvm/vmm.h"

namespace fcvm::firecracker {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const PluginDescriptor* load_descriptor() {
  void* lib = ::dlopen(FCVM_VMM_FIRECRACKER_PLUGIN, RTLD_NOW | RTLD_LOCAL);  // never closed
  EXPECT_NE(lib, nullptr) << ::dlerror();
  if (lib == nullptr) return nullptr;
  void* alias = ::dlsym(lib, FCVM_STRINGIFY(FCVM_PLUGIN_SYMBOL));
  EXPECT_NE(alias, nullptr) << ::dlerror();
  if (alias == nullptr) return nullptr;
  return static_cast<const PluginDescriptor*>(*static_cast<const void* const*>(alias));
}

std::vector<std::string> lines_of(const fs::path& file) {
  std::vector<std::string> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class FakeFirecrackerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string(FCVM_FIRECRACKER_API_YAML).empty()) {
      GTEST_SKIP() << "firecracker.yaml not found beside the repository: the fake cannot "
                      "validate bodies without it";
    }
    char tmpl[] = "/tmp/fcvm-fakefc-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    const PluginDescriptor* d = load_descriptor();
    ASSERT_NE(d, nullptr);
    ASSERT_STREQ(d->name, "vmm-firecracker");
    ASSERT_EQ(d->kind, PluginKind::vmm);
    PluginContext ctx{null_logger(), {{"binary", FCVM_FAKE_FIRECRACKER}}, root_};
    auto backend = d->create(ctx);
    ASSERT_TRUE(backend.ok()) << backend.status().message();
    backend_.reset(dynamic_cast<VmmBackend*>(backend->release()));
    ASSERT_NE(backend_, nullptr);
    std::ofstream(root_ / "vmlinux") << "kernel";
    std::ofstream(root_ / "base.sqfs") << "base";
  }
  void TearDown() override {
    backend_.reset();
    if (!root_.empty()) fs::remove_all(root_);
  }

  // A VM directory holding its own scratch disk and, optionally, the fake's behaviour.
  VmSpec spec(const std::string& name, const json& behaviour = json::object()) {
    VmSpec s;
    s.name = name;
    s.dir = root_ / name;
    fs::create_directories(s.dir);
    std::ofstream(s.dir / "scratch.ext4") << "scratch";
    if (!behaviour.empty()) std::ofstream(s.dir / "fake-firecracker.json") << behaviour.dump();
    s.vcpus = 2;
    s.memory_mib = 8;
    s.kernel = root_ / "vmlinux";
    s.cmdline = "console=ttyS0";
    s.drives = {{"root", root_ / "base.sqfs", true}, {"scratch", s.dir / "scratch.ext4", false}};
    s.nics = {{"eth0", "tap0", "02:fc:00:00:00:02"}};
    s.agent_socket = s.dir / "agent.sock";
    s.console_log = s.dir / "console.log";
    // As core fills it (mmds_for_plan in core/src/session/vm_session.h).
    agent::Plan plan;
    plan.hostname = name;
    plan.process.args = {"/bin/true"};
    plan.process.env = {"PATH=/bin"};
    plan.network = agent::Network{"02:fc:00:00:00:02", "172.30.0.2", 30, "172.30.0.1", {"1.1.1.1"}, 1500};
    s.mmds = {{"fcvm", {{"plan", agent::to_json(plan)}}}};
    return s;
  }

  // The fake's journal: the calls it answered, in order, with their status codes.
  std::vector<std::string> calls(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& line : lines_of(dir / "fake-firecracker.calls")) {
      if (line.rfind("CWD ", 0) != 0) out.push_back(line);
    }
    return out;
  }

  fs::path root_;
  std::unique_ptr<VmmBackend> backend_;
};

// The fake's answers for GET / and GET /version are not configuration calls.
std::vector<std::string> without_queries(const std::vector<std::string>& calls) {
  std::vector<std::string> out;
  for (const auto& c : calls) {
    if (c.rfind("GET ", 0) != 0) out.push_back(c);
  }
  return out;
}

TEST_F(FakeFirecrackerTest, CapabilitiesAndProbe) {
  const VmmCapabilities caps = backend_->capabilities();
  EXPECT_TRUE(caps.snapshot);
  EXPECT_TRUE(caps.restore_file_memory);
  EXPECT_TRUE(caps.restore_uffd_memory);
  EXPECT_TRUE(caps.dirty_page_tracking);
  EXPECT_TRUE(caps.mmds);
  EXPECT_EQ(caps.agent_transport, AgentTransport::vsock);
  // The fake binary runs and has a supported version, so what the probe can miss is the
  // host: on this kind of machine, hardware KVM.
  const Probe p = backend_->probe();
  if (!p.available) {
    EXPECT_NE(p.reason.find("KVM"), std::string::npos) << p.reason;
  } else {
    EXPECT_NE(p.reason.find("v1.16.1"), std::string::npos) << p.reason;
  }
}

TEST_F(FakeFirecrackerTest, ProbeNamesAMissingBinary) {
  const PluginDescriptor* d = load_descriptor();
  PluginContext ctx{null_logger(), {{"binary", "/nonexistent/firecracker"}}, root_};
  auto backend = d->create(ctx);
  ASSERT_TRUE(backend.ok());
  const Probe p = (*backend)->probe();
  EXPECT_FALSE(p.available);
  EXPECT_NE(p.reason.find("/nonexistent/firecracker"), std::string::npos) << p.reason;
  EXPECT_NE(p.reason.find("install Firecracker"), std::string::npos) << p.reason;
}

TEST_F(FakeFirecrackerTest, ProbeRefusesAnUnsupportedVersion) {
  ::setenv("FAKE_FC_VERSION", "1.10.1", 1);
  const Probe p = backend_->probe();
  ::unsetenv("FAKE_FC_VERSION");
  EXPECT_FALSE(p.available);
  EXPECT_NE(p.reason.find("v1.10.1 is not supported"), std::string::npos) << p.reason;
}

TEST_F(FakeFirecrackerTest, BootPauseSnapshotInOrder) {
  VmSpec s = spec("src");
  auto vm = backend_->launch(s);
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  // Firecracker runs in the VM directory: that is how relative drive paths resolve.
  EXPECT_EQ(lines_of(s.dir / "fake-firecracker.calls").front(), "CWD " + s.dir.string());
  EXPECT_EQ(without_queries(calls(s.dir)),
            (std::vector<std::string>{"PUT /logger 204", "PUT /metrics 204", "PUT /machine-config 204",
                                      "PUT /boot-source 204", "PUT /drives/root 204",
                                      "PUT /drives/scratch 204", "PUT /network-interfaces/eth0 204",
                                      "PUT /mmds/config 204", "PUT /mmds 204", "PUT /vsock 204",
                                      "PUT /entropy 204", "PUT /actions 204"}));
  // The plan reached MMDS as core gave it (the fake validated the body against
  // firecracker.yaml, else the launch would have failed with its 400).
  const auto mmds = json::parse(slurp(s.dir / "fake-firecracker.mmds"));
  EXPECT_EQ(mmds, s.mmds);
  std::string why;
  EXPECT_TRUE(agent::parse_plan(mmds["fcvm"]["plan"].dump(), &why)) << why;
  EXPECT_TRUE(fs::exists(s.dir / "firecracker.log"));
  EXPECT_EQ(fs::status(s.dir / "firecracker.log").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  // Snapshot of a running VM is refused before anything is written.
  const fs::path snap = root_ / "snap";
  fs::create_directories(snap);
  const SnapshotFiles files{snap / "state", snap / "mem"};
  Status running = (*vm)->snapshot(files);
  ASSERT_FALSE(running.ok());
  EXPECT_EQ(running.code(), Errc::invalid_argument);
  EXPECT_NE(running.message().find("pause it first"), std::string::npos) << running.message();

  ASSERT_TRUE((*vm)->pause().ok());
  Status snapped = (*vm)->snapshot(files);
  ASSERT_TRUE(snapped.ok()) << snapped.message();
  EXPECT_EQ(fs::file_size(files.memory), 8u << 20);
  EXPECT_EQ(slurp(files.memory).substr(0, 6), "FULL 1");
  EXPECT_FALSE(fs::exists(snap / "state.tmp"));
  EXPECT_FALSE(fs::exists(snap / "mem.tmp"));
  ASSERT_TRUE((*vm)->resume().ok());
  auto tail = without_queries(calls(s.dir));
  tail.erase(tail.begin(), tail.begin() + 12);
  EXPECT_EQ(tail, (std::vector<std::string>{"PATCH /vm 204", "PUT /snapshot/create 204", "PATCH /vm 204"}));

  // Shutdown of a running guest: SendCtrlAltDel, and the fake exits as Firecracker does on
  // a guest reboot with reboot=k.
  ASSERT_TRUE((*vm)->shutdown(std::chrono::seconds(30)).ok());
  ASSERT_TRUE((*vm)->exited().has_value());
  EXPECT_TRUE((*vm)->exited()->success());
  const auto last = calls(s.dir);
  ASSERT_GE(last.size(), 2u);
  EXPECT_EQ(last[last.size() - 2], "PUT /actions 204");
  EXPECT_EQ(last.back(), "EXIT");
  EXPECT_FALSE(fs::exists(s.dir / "api.sock"));
}

TEST_F(FakeFirecrackerTest, CloneLoadsFirstInItsOwnDirectory) {
  VmSpec s = spec("src");
  auto vm = backend_->launch(s);
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  ASSERT_TRUE((*vm)->pause().ok());
  const fs::path snap = root_ / "snap";
  fs::create_directories(snap);
  const SnapshotFiles files{snap / "state", snap / "mem"};
  ASSERT_TRUE((*vm)->snapshot(files).ok());
  (*vm)->kill();

  for (auto kind : {MemorySourceKind::file, MemorySourceKind::uffd}) {
    SCOPED_TRACE(kind == MemorySourceKind::file ? "File" : "Uffd");
    const std::string name = kind == MemorySourceKind::file ? "clone_file" : "clone_uffd";
    RestoreSpec r;
    r.vm = spec(name);  // the same relative layout: scratch.ext4 in the clone's dir
    r.vm.nics = {{"eth0", "tapc", ""}};
    r.snapshot = files;
    fs::path page_server = root_ / (name + ".uffd");
    int listener = -1;
    if (kind == MemorySourceKind::uffd) {
      listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, page_server.c_str(), sizeof(addr.sun_path) - 1);
      ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
      ASSERT_EQ(::listen(listener, 4), 0);
      r.memory = {MemorySourceKind::uffd, page_server};
    } else {
      r.memory = {MemorySourceKind::file, files.memory};
    }
    auto clone = backend_->restore(r);
    ASSERT_TRUE(clone.ok()) << clone.status().message();
    EXPECT_EQ(without_queries(calls(r.vm.dir)),
              (std::vector<std::string>{"PUT /logger 204", "PUT /metrics 204", "PUT /snapshot/load 204"}));
    EXPECT_EQ(lines_of(r.vm.dir / "fake-firecracker.calls").front(), "CWD " + r.vm.dir.string());
    if (listener >= 0) {
      // The page server got Firecracker's handshake message: the regions as JSON.
      int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      ASSERT_GE(c, 0);
      char buf[512] = {};
      ASSERT_GT(::read(c, buf, sizeof(buf) - 1), 0);
      auto regions = json::parse(buf);
      EXPECT_EQ(regions[0]["size"], 8u << 20);
      ::close(c);
      ::close(listener);
    }
    // The clone's agent channel is its own vsock socket (vsock_override) and works.
    auto agent = (*clone)->connect_agent(std::chrono::steady_clock::now() + std::chrono::seconds(20));
    ASSERT_TRUE(agent.ok()) << agent.status().message();
    ASSERT_EQ(::write(agent->get(), "hi", 2), 2);
    char echo[2] = {};
    ASSERT_EQ(::read(agent->get(), echo, 2), 2);
    EXPECT_EQ(std::string(echo, 2), "hi");
    (*clone)->kill();
  }
}

TEST_F(FakeFirecrackerTest, CloneWithoutTheSnapshotLayoutFailsClearly) {
  VmSpec s = spec("src");
  auto vm = backend_->launch(s);
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  ASSERT_TRUE((*vm)->pause().ok());
  const SnapshotFiles files{root_ / "state", root_ / "mem"};
  ASSERT_TRUE((*vm)->snapshot(files).ok());
  (*vm)->kill();

  RestoreSpec r;
  r.vm = spec("clone");
  fs::rename(r.vm.dir / "scratch.ext4", r.vm.dir / "elsewhere.ext4");
  r.vm.drives[1].path = r.vm.dir / "elsewhere.ext4";
  r.snapshot = files;
  r.memory = {MemorySourceKind::file, files.memory};
  auto clone = backend_->restore(r);
  ASSERT_FALSE(clone.ok());
  const std::string m = clone.status().message();
  EXPECT_NE(m.find("PUT /snapshot/load"), std::string::npos) << m;
  EXPECT_NE(m.find("scratch.ext4"), std::string::npos) << m;
  // A failed load ends Firecracker (the fake too); nothing is left running.
  EXPECT_FALSE(fs::exists(r.vm.dir / "api.sock"));
}

TEST_F(FakeFirecrackerTest, DiffSnapshotMergesIntoACopyOfTheBase) {
  VmSpec s = spec("src");
  s.vmm_options = {{"snapshot_type", "Diff"}};
  auto vm = backend_->launch(s);
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  ASSERT_TRUE((*vm)->pause().ok());
  const SnapshotFiles first{root_ / "state1", root_ / "mem1"};
  ASSERT_TRUE((*vm)->snapshot(first).ok());  // no base yet: Full
  EXPECT_EQ(slurp(first.memory).substr(0, 6), "FULL 1");
  // A fork shares the base image by hardlink: the merge must not write through it.
  fs::create_hard_link(first.memory, root_ / "fork-mem");
  const SnapshotFiles second{root_ / "state2", root_ / "mem2"};
  Status diff = (*vm)->snapshot(second);
  ASSERT_TRUE(diff.ok()) << diff.message();
  const std::string merged = slurp(second.memory);
  EXPECT_EQ(merged.substr(0, 6), "FULL 1");       // the base's pages
  EXPECT_EQ(merged.substr(4096, 6), "DIFF 2");    // the dirty pages merged in
  EXPECT_EQ(slurp(first.memory).substr(4096, 4), std::string(4, '\0'));  // base untouched
  EXPECT_EQ(fs::hard_link_count(first.memory), 2u);
  const auto tail = without_queries(calls(s.dir));
  EXPECT_EQ(tail[2], "PUT /machine-config 204");

  // Merging into the image it was based on (same name): the name gets the merged image,
  // the fork keeps the old inode's bytes.
  fs::remove(root_ / "fork-mem");
  fs::create_hard_link(second.memory, root_ / "fork-mem");
  ASSERT_TRUE((*vm)->snapshot(second).ok());
  EXPECT_EQ(slurp(second.memory).substr(4096, 6), "DIFF 3");
  EXPECT_EQ(slurp(root_ / "fork-mem").substr(4096, 6), "DIFF 2");
  EXPECT_EQ(fs::hard_link_count(second.memory), 1u);
}

TEST_F(FakeFirecrackerTest, FaultNamesTheCall) {
  VmSpec s = spec("faulty", {{"fault", "PUT /drives/scratch"}});
  auto vm = backend_->launch(s);
  ASSERT_FALSE(vm.ok());
  const std::string m = vm.status().message();
  EXPECT_EQ(vm.status().code(), Errc::invalid_argument) << m;
  EXPECT_NE(m.find("vmm-firecracker: VM faulty: boot: PUT /drives/scratch: Firecracker answered 400"),
            std::string::npos) << m;
  EXPECT_NE(m.find("injected fault"), std::string::npos) << m;
  // The fake saw nothing after the failed call, and was killed with the handle.
  EXPECT_EQ(calls(s.dir).back(), "PUT /drives/scratch 400");
  EXPECT_FALSE(fs::exists(s.dir / "api.sock"));
}

TEST_F(FakeFirecrackerTest, VmmDyingMidCallIsReported) {
  VmSpec s = spec("dying", {{"die", "PUT /snapshot/create"}});
  auto vm = backend_->launch(s);
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  ASSERT_TRUE((*vm)->pause().ok());
  Status snapped = (*vm)->snapshot({root_ / "state", root_ / "mem"});
  ASSERT_FALSE(snapped.ok());
  EXPECT_NE(snapped.message().find("Firecracker exited (exit code 3)"), std::string::npos) << snapped.message();
  EXPECT_NE(snapped.message().find("PUT /snapshot/create"), std::string::npos) << snapped.message();
  EXPECT_FALSE(fs::exists(root_ / "state"));
  EXPECT_FALSE(fs::exists(root_ / "mem.tmp"));
  // Every later call says the VMM is gone instead of hanging.
  Status resumed = (*vm)->resume();
  ASSERT_FALSE(resumed.ok());
  EXPECT_NE(resumed.message().find("Firecracker exited"), std::string::npos) << resumed.message();
  auto agent = (*vm)->connect_agent(std::chrono::steady_clock::now() + std::chrono::seconds(20));
  ASSERT_FALSE(agent.ok());
  EXPECT_NE(agent.status().message().find("Firecracker exited"), std::string::npos) << agent.status().message();
}

TEST_F(FakeFirecrackerTest, UnsupportedVersionIsRefusedAtLaunch) {
  VmSpec s = spec("old", {{"version", "1.12.0"}});
  auto vm = backend_->launch(s);
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(vm.status().code(), Errc::unavailable);
  EXPECT_NE(vm.status().message().find("v1.12.0 is not supported"), std::string::npos) << vm.status().message();
  EXPECT_EQ(calls(s.dir), (std::vector<std::string>{"GET /version 200"}));  // nothing configured
}

TEST_F(FakeFirecrackerTest, AgentChannelRetriesUntilTheGuestListens) {
  VmSpec s = spec("agent", {{"vsock", "refuse:3"}});
  auto vm = backend_->launch(s);
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  auto agent = (*vm)->connect_agent(std::chrono::steady_clock::now() + std::chrono::seconds(20));
  ASSERT_TRUE(agent.ok()) << agent.status().message();
  ASSERT_EQ(::write(agent->get(), "x", 1), 1);
  char echo = 0;
  ASSERT_EQ(::read(agent->get(), &echo, 1), 1);
  EXPECT_EQ(echo, 'x');
}

TEST_F(FakeFirecrackerTest, AgentChannelNeedsASocket) {
  VmSpec s = spec("nosock");
  s.agent_socket.clear();
  s.mmds = nullptr;
  EXPECT_FALSE(backend_->launch(s).ok());  // Firecracker guests reach their agent over vsock only
}

TEST_F(FakeFirecrackerTest, AgentChannelRejectsGarbage) {
  VmSpec s = spec("garbage", {{"vsock", "garbage"}});
  auto vm = backend_->launch(s);
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  auto agent = (*vm)->connect_agent(std::chrono::steady_clock::now() + std::chrono::seconds(20));
  ASSERT_FALSE(agent.ok());
  EXPECT_EQ(agent.status().code(), Errc::protocol);
  EXPECT_NE(agent.status().message().find("'NOPE\\n'"), std::string::npos) << agent.status().message();
}

TEST_F(FakeFirecrackerTest, BadSpecLeavesNothingRunning) {
  VmSpec s = spec("bad");
  s.drives[1].id = "scratch-disk";
  auto vm = backend_->launch(s);
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(vm.status().code(), Errc::invalid_argument);
  EXPECT_FALSE(fs::exists(s.dir / "fake-firecracker.calls"));  // never started
  s = spec("bad2");
  s.vmm_options = {{"snapshot_type", "Incremental"}};
  EXPECT_FALSE(backend_->launch(s).ok());
}

}  // namespace
}  // namespace fcvm::firecracker
