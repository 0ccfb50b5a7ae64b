// The VmmBackend contract, checked against every VMM plugin the build made.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>

#include "agent/agent_channel.h"
#include "fcvm/backend_wrapper.h"
#include "fcvm/vmm.h"
#include "plugin_contract.h"
#include "session/guest_assets.h"

namespace fcvm::contract {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

bool same(const VmmCapabilities& a, const VmmCapabilities& b) {
  return a.snapshot == b.snapshot && a.restore_file_memory == b.restore_file_memory &&
         a.restore_uffd_memory == b.restore_uffd_memory &&
         a.dirty_page_tracking == b.dirty_page_tracking && a.mmds == b.mmds &&
         a.agent_transport == b.agent_transport;
}

class VmmContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-vmm-contract-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
    auto vmm = load<VmmBackend>(GetParam(), PluginKind::vmm, dir_.path() / "data");
    ASSERT_TRUE(vmm.ok()) << vmm.status().message();
    vmm_ = std::move(*vmm);
  }

  // A spec for a VM in DIR/<name> booting `kernel` with nothing else.
  VmSpec spec(const std::string& name, const fs::path& kernel) const {
    VmSpec s;
    s.name = name;
    s.dir = dir_.path() / name;
    s.memory_mib = 128;
    s.kernel = kernel;
    s.cmdline = "console=ttyS0 quiet panic=-1";
    s.agent_socket = s.dir / "agent.sock";
    s.console_log = s.dir / "console.log";
    return s;
  }

  // Skips unless the backend can run here and a guest kernel is given.
  std::optional<GuestAssets> guest_or_skip() {
    const Probe probe = vmm_->probe();
    if (!probe.available) {
      skip_reason_ = GetParam() + " cannot run here: " + probe.reason;
      return std::nullopt;
    }
    const char* kernel = std::getenv("FCVM_TEST_KERNEL");
    if (!kernel || !fs::exists(kernel)) {
      skip_reason_ = "FCVM_TEST_KERNEL is not set to a guest kernel";
      return std::nullopt;
    }
    auto assets = find_guest_assets(dir_.path() / "data", fs::path(kernel), null_logger());
    if (!assets) {
      skip_reason_ = "no initramfs: " + assets.status().message();
      return std::nullopt;
    }
    return *assets;
  }

  TempDir dir_;
  std::shared_ptr<VmmBackend> vmm_;
  std::string skip_reason_;
};

TEST_P(VmmContract, CapabilitiesAreConstant) {
  EXPECT_TRUE(same(vmm_->capabilities(), vmm_->capabilities()));
}

TEST_P(VmmContract, LaunchWithAMissingKernelFailsNamingItAndLeavesNothingRunning) {
  const auto missing = dir_.path() / "no-such-vmlinux";
  auto vm = vmm_->launch(spec("missing-kernel", missing));
  ASSERT_FALSE(vm.ok());
  EXPECT_NE(vm.status().message().find(missing.string()), std::string::npos) << vm.status().message();
  EXPECT_TRUE(child_pids().empty());
}

TEST_P(VmmContract, RestoreFromAMissingSnapshotFailsAndLeavesNothingRunning) {
  RestoreSpec r;
  r.vm = spec("missing-snapshot", dir_.path() / "vmlinux");
  r.snapshot = {dir_.path() / "no-such-state", dir_.path() / "no-such-mem"};
  r.memory = {MemorySourceKind::file, r.snapshot.memory};
  auto vm = vmm_->restore(r);
  ASSERT_FALSE(vm.ok());
  EXPECT_TRUE(child_pids().empty());
}

TEST_P(VmmContract, RestoreWithUffdMemoryIsRefusedUnlessCapable) {
  if (vmm_->capabilities().restore_uffd_memory) GTEST_SKIP() << GetParam() << " restores from UFFD";
  RestoreSpec r;
  r.vm = spec("uffd", dir_.path() / "vmlinux");
  r.snapshot = {dir_.path() / "state", dir_.path() / "mem"};
  r.memory = {MemorySourceKind::uffd, dir_.path() / "uffd.sock"};
  auto vm = vmm_->restore(r);
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(vm.status().code(), Errc::unavailable) << vm.status().message();
  EXPECT_TRUE(child_pids().empty());
}

TEST_P(VmmContract, RestoreWithUffdMemoryOfAMissingSnapshotFailsAndLeavesNothing) {
  if (!vmm_->capabilities().restore_uffd_memory) GTEST_SKIP() << GetParam() << " does not restore from UFFD";
  RestoreSpec r;
  r.vm = spec("uffd-missing", dir_.path() / "vmlinux");
  r.snapshot = {dir_.path() / "no-such-state", dir_.path() / "no-such-mem"};
  r.memory = {MemorySourceKind::uffd, dir_.path() / "uffd.sock"};
  int announced = 0;
  r.announce_vmm = [&](pid_t) {
    ++announced;
    return ok_status();
  };
  auto vm = vmm_->restore(r);
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(announced, 0) << "nothing was started, so nothing is announced";
  EXPECT_TRUE(child_pids().empty());
}

// Boots the fcvm initramfs: the agent greets the host through connect_agent whatever the
// transport; kill() ends the recorded VMM process (checked by pid, not by name).
TEST_P(VmmContract, BootedGuestAgentAnswersThroughConnectAgentAndKillEndsTheVmm) {
  auto assets = guest_or_skip();
  if (!assets) GTEST_SKIP() << skip_reason_;
  VmSpec s = spec("boot", assets->kernel);
  s.initrd = assets->initrd;
  auto vm = vmm_->launch(s);
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  const pid_t pid = (*vm)->pid();
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(process_alive(pid));
  EXPECT_FALSE((*vm)->exited());

  auto fd = (*vm)->connect_agent(Clock::now() + 60s);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  auto channel = AgentChannel::adopt(std::move(*fd));
  ASSERT_TRUE(channel.ok());
  auto hello = channel->wait_hello(120s);
  ASSERT_TRUE(hello.ok()) << hello.status().message();
  EXPECT_EQ(hello->agent, "fc-agent");
  EXPECT_FALSE(hello->boot_id.empty());

  (*vm)->kill();
  (*vm)->kill();  // idempotent
  EXPECT_FALSE(process_alive(pid));
  EXPECT_TRUE((*vm)->exited().has_value());
  auto again = (*vm)->connect_agent(Clock::now() + 600s);
  EXPECT_FALSE(again.ok()) << "connect_agent must fail at once when the VMM is gone";
  vm->reset();
  EXPECT_TRUE(child_pids().empty());
}

// A forwarding wrapper keeps the plugin real except for the one call a test overrides.
class RefusingLaunch final : public VmmBackendWrapper {
 public:
  using VmmBackendWrapper::VmmBackendWrapper;
  Result<std::unique_ptr<Vm>> launch(const VmSpec&) override {
    return error(Errc::io, "injected launch failure");
  }
};

TEST_P(VmmContract, WrapperForwardsEverythingButTheOverriddenCall) {
  RefusingLaunch wrapped(vmm_);
  EXPECT_TRUE(same(wrapped.capabilities(), vmm_->capabilities()));
  EXPECT_EQ(wrapped.probe().available, vmm_->probe().available);
  EXPECT_EQ(wrapped.launch(spec("x", "/nonexistent")).status().message(), "injected launch failure");
}

INSTANTIATE_TEST_SUITE_P(Plugins, VmmContract, ::testing::ValuesIn(plugins_of(PluginKind::vmm)),
                         param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(VmmContract);

}  // namespace
}  // namespace fcvm::contract
