// VmSession against the real storage-squashfs and vmm-qemu plugins, loaded through the real
// loader. Test-local subclasses of the interfaces forward every call to the real backend
// and make exactly one call fail, to prove the session gives back everything it created.
#include "session/vm_session.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/eventfd.h>

#include <fstream>

#include "fcvm/temp_dir.h"
#include "plugin/plugin_registry.h"
#include "session/image_boot.h"
#include "session/snapshot_restore.h"
#include "state/state_store.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

fs::path plugin_dir() {
  const char* env = std::getenv("FCVM_BINARY_DIR");
  return (env ? fs::path(env) : fs::path(FCVM_BINARY_DIR)) / "lib" / "fcvm" / "plugins";
}

// Forwards to the real storage plugin and remembers what it handed out and got back.
class RecordingStorage final : public StorageBackend {
 public:
  explicit RecordingStorage(std::shared_ptr<StorageBackend> real) : real_(std::move(real)) {}
  Probe probe() override { return real_->probe(); }
  Result<BaseImage> prepare_base(const ImageRootfs& image) override { return real_->prepare_base(image); }
  Result<DiskLease> create_disks(const BaseImage& base, const fs::path& vm_dir,
                                 const DiskOptions& options) override {
    auto lease = real_->create_disks(base, vm_dir, options);
    if (lease) created.push_back(*lease);
    return lease;
  }
  Result<DiskLease> snapshot_disks(const DiskLease& vm, const fs::path& dir) override {
    return real_->snapshot_disks(vm, dir);
  }
  Result<DiskLease> clone_disks(const DiskLease& snapshot, const fs::path& dir) override {
    auto lease = real_->clone_disks(snapshot, dir);
    if (lease) created.push_back(*lease);
    return lease;
  }
  Status destroy(const DiskLease& lease) override {
    destroyed.push_back(lease);
    return real_->destroy(lease);
  }

  std::vector<DiskLease> created, destroyed;

 private:
  std::shared_ptr<StorageBackend> real_;
};

// A VM whose VMM really runs, but which reports that its VMM died: the failure a session
// must survive while the guest boots.
class DyingVm final : public Vm {
 public:
  explicit DyingVm(std::unique_ptr<Vm> real) : real_(std::move(real)), dead_(::eventfd(1, EFD_CLOEXEC)) {}
  pid_t pid() const override { return real_->pid(); }
  int exit_fd() const override { return dead_.get(); }
  std::optional<ExitStatus> exited() override { return ExitStatus{0, SIGKILL}; }
  Status pause() override { return real_->pause(); }
  Status resume() override { return real_->resume(); }
  Status snapshot(const SnapshotFiles& files) override { return real_->snapshot(files); }
  Status shutdown(std::chrono::milliseconds timeout) override {
    ++shutdowns;
    return real_->shutdown(timeout);
  }
  void kill() override { real_->kill(); }
  Result<UniqueFd> connect_agent(std::chrono::steady_clock::time_point deadline) override {
    return real_->connect_agent(deadline);
  }

  static inline int shutdowns = 0;

 private:
  std::unique_ptr<Vm> real_;
  UniqueFd dead_;
};

// Forwards to the real network plugin, except that attach() fails after the VMM started.
class AttachFailingNetwork final : public NetworkBackend {
 public:
  explicit AttachFailingNetwork(std::shared_ptr<NetworkBackend> real) : real_(std::move(real)) {}
  Probe probe() override { return real_->probe(); }
  Result<NetworkLease> setup(const NetworkRequest& request) override {
    auto lease = real_->setup(request);
    if (lease) created.push_back(*lease);
    return lease;
  }
  Status attach(NetworkLease&, pid_t) override { return error(Errc::io, "injected: attach fails"); }
  Result<NetworkLease> setup_clone(const NetworkLease& snapshot, const NetworkRequest& request) override {
    return real_->setup_clone(snapshot, request);
  }
  Status teardown(const NetworkLease& lease) override {
    torn_down.push_back(lease);
    return real_->teardown(lease);
  }

  std::vector<NetworkLease> created, torn_down;

 private:
  std::shared_ptr<NetworkBackend> real_;
};

enum class Inject { nothing, launch_fails, vm_dies_while_booting, no_uffd_restore };

// Forwards to the real VMM plugin, with one injected failure.
class FaultyVmm final : public VmmBackend {
 public:
  FaultyVmm(std::shared_ptr<VmmBackend> real, Inject inject) : real_(std::move(real)), inject_(inject) {}
  Probe probe() override { return real_->probe(); }
  VmmCapabilities capabilities() const override {
    VmmCapabilities caps = real_->capabilities();
    caps.mmds = caps.mmds || serves_mmds;
    if (inject_ == Inject::no_uffd_restore) caps.restore_uffd_memory = false;
    return caps;
  }
  Result<std::unique_ptr<Vm>> launch(const VmSpec& spec) override {
    launches.push_back(spec);
    if (inject_ == Inject::launch_fails) return error(Errc::io, "injected: launch fails");
    auto vm = real_->launch(spec);
    if (!vm) return vm.status();
    vmm_pid = (*vm)->pid();
    if (inject_ == Inject::nothing) return vm;
    return std::unique_ptr<Vm>(std::make_unique<DyingVm>(std::move(*vm)));
  }
  Result<std::unique_ptr<Vm>> restore(const RestoreSpec& spec) override {
    restores.push_back(spec);
    return real_->restore(spec);
  }

  pid_t vmm_pid = 0;
  bool serves_mmds = false;  // declare MMDS, as vmm-firecracker does
  std::vector<VmSpec> launches;
  std::vector<RestoreSpec> restores;

 private:
  std::shared_ptr<VmmBackend> real_;
  Inject inject_;
};

class VmSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(plugin_dir() / "fcvm-storage-squashfs.so") ||
        !fs::exists(plugin_dir() / "fcvm-vmm-qemu.so")) {
      GTEST_SKIP() << "the storage-squashfs and vmm-qemu plugins are not built in " << plugin_dir();
    }
    auto tmp = TempDir::create(fs::temp_directory_path(), "fcvm-session-test-");
    ASSERT_TRUE(tmp.ok()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    data_dir_ = tmp_.path() / "data";
    fs::create_directories(data_dir_);
    registry_ = std::make_unique<PluginRegistry>(std::vector<fs::path>{plugin_dir()}, null_logger());
    PluginContext ctx{null_logger(), nlohmann::json::object(), data_dir_};
    auto storage = registry_->create_as<StorageBackend>("storage-squashfs", PluginKind::storage, ctx);
    ASSERT_TRUE(storage.ok()) << storage.status().message();
    auto vmm = registry_->create_as<VmmBackend>("vmm-qemu", PluginKind::vmm, ctx);
    ASSERT_TRUE(vmm.ok()) << vmm.status().message();
    for (Backend* b : {static_cast<Backend*>(storage->get()), static_cast<Backend*>(vmm->get())}) {
      if (Probe p = b->probe(); !p.available) GTEST_SKIP() << p.reason;
    }
    real_storage_ = *storage;
    real_vmm_ = *vmm;
    state_ = std::make_unique<StateStore>(data_dir_);

    rootfs_ = tmp_.path() / "rootfs";
    fs::create_directories(rootfs_ / "etc");
    std::ofstream(rootfs_ / "etc" / "hostname") << "session-test\n";
  }

  ImageBootSpec boot_spec(const fs::path& kernel) const {
    ImageBootSpec spec;
    spec.image_ref = "test-image";
    spec.rootfs = {"sha256:" + std::string(64, 'b'), rootfs_};
    spec.assets.kernel = kernel;
    spec.process.args = {"/bin/true"};
    return spec;
  }

  Result<int> run_session(const std::shared_ptr<VmmBackend>& vmm, VmOrigin& origin,
                          std::shared_ptr<NetworkBackend> network = nullptr) {
    SessionBackends backends{vmm, storage_, std::move(network),
                             {{PluginKind::storage, "storage-squashfs"}, {PluginKind::vmm, "vmm-qemu"}}};
    VmSessionOptions options;
    options.name = "session-test-" + std::to_string(::getpid());
    options.forward_output = false;
    options.keep_exited = false;  // as with --rm: a failed run gives everything back
    VmSession session(SessionServices{*state_, data_dir_, null_logger()}, std::move(backends), options);
    return session.run(origin);
  }

  // Nothing of the session is left: no record, no VM directory, and every disk lease the
  // storage plugin handed out was given back to it and its files are gone.
  void expect_nothing_left() {
    auto records = state_->list();
    ASSERT_TRUE(records.ok());
    EXPECT_TRUE(records->empty());
    const fs::path vms = data_dir_ / "vms";
    EXPECT_TRUE(!fs::exists(vms) || fs::is_empty(vms));
    ASSERT_EQ(storage_->created.size(), 1u);
    ASSERT_EQ(storage_->destroyed.size(), 1u);
    EXPECT_EQ(nlohmann::json(storage_->destroyed[0]), nlohmann::json(storage_->created[0]));
    for (const auto& d : storage_->created[0].drives) {
      if (!d.read_only) {
        EXPECT_FALSE(fs::exists(d.path)) << d.path;
      }
    }
  }

  TempDir tmp_;
  fs::path data_dir_, rootfs_;
  std::unique_ptr<PluginRegistry> registry_;
  std::shared_ptr<StorageBackend> real_storage_;
  std::shared_ptr<VmmBackend> real_vmm_;
  std::shared_ptr<RecordingStorage> storage_;
  std::unique_ptr<StateStore> state_;

  void make_storage() { storage_ = std::make_shared<RecordingStorage>(real_storage_); }

  // The real network-bridged plugin, or why it cannot run here. ip_forward off: the test
  // leaves the host's setting as it found it.
  Result<std::shared_ptr<NetworkBackend>> bridged_network() {
    if (!fs::exists(plugin_dir() / "fcvm-network-bridged.so")) {
      return error(Errc::unavailable, "the network-bridged plugin is not built in " + plugin_dir().string());
    }
    PluginContext ctx{null_logger(), nlohmann::json{{"ip_forward", false}}, data_dir_};
    auto bridged = registry_->create_as<NetworkBackend>("network-bridged", PluginKind::network, ctx);
    if (!bridged) return bridged.status();
    if (Probe p = (*bridged)->probe(); !p.available) return error(Errc::unavailable, p.reason);
    return *bridged;
  }
};

// Subnets, veths and the host's nft table are the host's, not a data dir's: fcvm processes
// with two data dirs never hand out the same subnet.
TEST_F(VmSessionTest, NetworkBridgedOfTwoDataDirsHandsOutDistinctSubnets) {
  auto first = bridged_network();
  if (!first.ok() && first.status().code() == Errc::unavailable) GTEST_SKIP() << first.status().message();
  ASSERT_TRUE(first.ok()) << first.status().message();
  const fs::path other_dir = tmp_.path() / "other-data";
  fs::create_directories(other_dir);
  PluginContext ctx{null_logger(), nlohmann::json{{"ip_forward", false}}, other_dir};
  auto second = registry_->create_as<NetworkBackend>("network-bridged", PluginKind::network, ctx);
  ASSERT_TRUE(second.ok()) << second.status().message();
  auto a = (*first)->setup(NetworkRequest{random_vm_id(), "a", {}});
  ASSERT_TRUE(a.ok()) << a.status().message();
  auto b = (*second)->setup(NetworkRequest{random_vm_id(), "b", {}});
  EXPECT_TRUE(b.ok()) << b.status().message();
  if (b.ok()) {
    EXPECT_NE(a->extra["subnet"], b->extra["subnet"]);
    EXPECT_TRUE((*second)->teardown(*b).ok());
  }
  EXPECT_TRUE((*first)->teardown(*a).ok());
}

TEST_F(VmSessionTest, FailedLaunchGivesBackDisksRecordAndDirectory) {
  make_storage();
  auto vmm = std::make_shared<FaultyVmm>(real_vmm_, Inject::launch_fails);
  ImageBoot origin(boot_spec("/nonexistent/kernel"));
  auto r = run_session(vmm, origin);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("injected: launch fails"), std::string::npos) << r.status().message();
  expect_nothing_left();
}

TEST_F(VmSessionTest, VmmDyingWhileBootingStopsTheVmmAndGivesBackEverything) {
  const char* kernel = std::getenv("FCVM_TEST_KERNEL");
  if (!kernel || !fs::exists(kernel)) GTEST_SKIP() << "FCVM_TEST_KERNEL is not set (scripts/test sets it)";
  make_storage();
  auto vmm = std::make_shared<FaultyVmm>(real_vmm_, Inject::vm_dies_while_booting);
  DyingVm::shutdowns = 0;
  ImageBoot origin(boot_spec(kernel));
  auto r = run_session(vmm, origin);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("exited while booting"), std::string::npos) << r.status().message();
  ASSERT_GT(vmm->vmm_pid, 0);
  EXPECT_EQ(DyingVm::shutdowns, 1);
  // The real VMM was stopped and reaped by the session's teardown.
  EXPECT_NE(::kill(vmm->vmm_pid, 0), 0) << "the VMM (pid " << vmm->vmm_pid << ") outlived its session";
  expect_nothing_left();
}

// The last lease taken before the failure is the VM itself, inside the network's namespace:
// all four (VMM, network, disks, record) must go.
TEST_F(VmSessionTest, NetworkAttachFailureStopsTheVmmAndGivesBackNetworkDisksAndRecord) {
  const char* kernel = std::getenv("FCVM_TEST_KERNEL");
  if (!kernel || !fs::exists(kernel)) GTEST_SKIP() << "FCVM_TEST_KERNEL is not set (scripts/test sets it)";
  auto bridged = bridged_network();
  if (!bridged) GTEST_SKIP() << bridged.status().message();
  make_storage();
  auto network = std::make_shared<AttachFailingNetwork>(*bridged);
  auto vmm = std::make_shared<FaultyVmm>(real_vmm_, Inject::nothing);
  ImageBoot origin(boot_spec(kernel));
  auto r = run_session(vmm, origin, network);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("injected: attach fails"), std::string::npos) << r.status().message();
  ASSERT_GT(vmm->vmm_pid, 0);
  EXPECT_NE(::kill(vmm->vmm_pid, 0), 0) << "the VMM (pid " << vmm->vmm_pid << ") outlived its session";
  ASSERT_EQ(network->created.size(), 1u);
  ASSERT_EQ(network->torn_down.size(), 1u);
  EXPECT_EQ(nlohmann::json(network->torn_down[0]), nlohmann::json(network->created[0]));
  for (const auto& ns : network->created[0].namespaces) EXPECT_FALSE(fs::exists(ns)) << ns;
  expect_nothing_left();
}

// A VMM that serves MMDS (vmm-firecracker sends it as PUT /mmds) finds the agent's plan in
// VmSpec::mmds; MMDS is served through a NIC, so the VM has a real network here. The
// launch fails on purpose: what matters is the spec it got.
TEST_F(VmSessionTest, AVmmWithMmdsGetsThePlanAndOneWithoutGetsNone) {
  auto bridged = bridged_network();
  if (!bridged) GTEST_SKIP() << bridged.status().message();
  for (bool serves_mmds : {true, false}) {
    make_storage();
    auto vmm = std::make_shared<FaultyVmm>(real_vmm_, Inject::launch_fails);
    vmm->serves_mmds = serves_mmds;
    ImageBoot origin(boot_spec("/nonexistent/kernel"));
    auto r = run_session(vmm, origin, *bridged);
    ASSERT_FALSE(r.ok());
    ASSERT_EQ(vmm->launches.size(), 1u);
    const VmSpec& spec = vmm->launches[0];
    if (!serves_mmds) {
      EXPECT_TRUE(spec.mmds.is_null()) << spec.mmds.dump();
      expect_nothing_left();
      continue;
    }
    ASSERT_TRUE(spec.mmds.contains("fcvm")) << spec.mmds.dump();
    std::string why;
    auto plan = agent::parse_plan(spec.mmds["fcvm"]["plan"].dump(), &why);
    ASSERT_TRUE(plan) << why;
    EXPECT_EQ(plan->hostname, "session-test-" + std::to_string(::getpid()));
    EXPECT_EQ(plan->process.args, std::vector<std::string>{"/bin/true"});
    ASSERT_TRUE(plan->network);
    ASSERT_EQ(spec.nics.size(), 1u);
    EXPECT_EQ(plan->network->mac, spec.nics[0].mac);
    EXPECT_EQ(nlohmann::json(spec.mmds), mmds_for_plan(*plan));
    expect_nothing_left();
  }
}

// The restore path runs the same lifecycle with the snapshot's steps: the clone's disks
// come from clone_disks and the VMM's restore() gets the clone's own layout. The snapshot's
// state file does not exist, so vmm-qemu fails the restore and the session must give back
// the cloned disks.
TEST_F(VmSessionTest, RestoreClonesDisksAndHandsTheLayoutToTheVmm) {
  make_storage();
  auto base = real_storage_->prepare_base({"sha256:" + std::string(64, 'c'), rootfs_});
  ASSERT_TRUE(base.ok()) << base.status().message();
  const fs::path snapshot_dir = tmp_.path() / "snapshot";
  fs::create_directories(snapshot_dir);
  auto source = real_storage_->create_disks(*base, snapshot_dir, DiskOptions{});
  ASSERT_TRUE(source.ok()) << source.status().message();

  SnapshotRestoreSpec spec;
  spec.snapshot_name = "snap";
  spec.disks = *source;
  spec.files = {snapshot_dir / "state", snapshot_dir / "mem"};
  spec.memory = {MemorySourceKind::file, snapshot_dir / "mem"};
  SnapshotRestore origin(spec);
  auto vmm = std::make_shared<FaultyVmm>(real_vmm_, Inject::nothing);
  auto r = run_session(vmm, origin);
  ASSERT_FALSE(r.ok());

  ASSERT_EQ(vmm->restores.size(), 1u);
  const RestoreSpec& got = vmm->restores[0];
  EXPECT_EQ(got.snapshot.state, snapshot_dir / "state");
  EXPECT_EQ(got.memory.kind, MemorySourceKind::file);
  EXPECT_EQ(got.vm.agent_socket, got.vm.dir / "agent.sock");
  EXPECT_EQ(got.vm.dir.parent_path(), data_dir_ / "vms");
  ASSERT_EQ(got.vm.drives.size(), source->drives.size());
  for (size_t i = 0; i < got.vm.drives.size(); ++i) EXPECT_EQ(got.vm.drives[i].id, source->drives[i].id);
  expect_nothing_left();
  EXPECT_TRUE(real_storage_->destroy(*source).ok());
}

// A memory source the VMM cannot restore from is refused before anything is created.
TEST_F(VmSessionTest, RestoreTheVmmCannotDoIsRefusedBeforeAnythingIsCreated) {
  make_storage();
  auto vmm = std::make_shared<FaultyVmm>(real_vmm_, Inject::no_uffd_restore);
  SnapshotRestoreSpec spec;
  spec.snapshot_name = "snap";
  spec.memory = {MemorySourceKind::uffd, tmp_.path() / "uffd.sock"};
  spec.memory_plugin = "memory-uffd";
  SnapshotRestore origin(spec);
  auto r = run_session(vmm, origin);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::invalid_argument);
  EXPECT_NE(r.status().message().find("cannot restore from a UFFD page server (memory backend memory-uffd)"),
            std::string::npos)
      << r.status().message();
  EXPECT_TRUE(storage_->created.empty());
  EXPECT_TRUE(vmm->restores.empty());
  auto records = state_->list();
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->empty());
}

}  // namespace
}  // namespace fcvm
