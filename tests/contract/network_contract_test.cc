// The NetworkBackend contract, checked against every network plugin the build made.
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>

#include "fcvm/backend_wrapper.h"
#include "fcvm/network.h"
#include "plugin_contract.h"

namespace fcvm::contract {
namespace {

// A vm_id no concurrent test run uses.
std::string unique_vm_id() {
  std::random_device rd;
  return "ct" + std::to_string(::getpid() % 100000) + std::to_string(rd() % 10000);
}

class NetworkContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-network-contract-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
    // Tests leave the host's ip_forward as they found it (network-bridged turns it on by default).
    const auto config = GetParam() == "network-bridged" ? nlohmann::json{{"ip_forward", false}}
                                                        : nlohmann::json::object();
    auto net = load<NetworkBackend>(GetParam(), PluginKind::network, dir_.path() / "data", config);
    ASSERT_TRUE(net.ok()) << net.status().message();
    net_ = std::move(*net);
    const Probe probe = net_->probe();
    if (!probe.available) GTEST_SKIP() << GetParam() << " cannot run here: " << probe.reason;
    request_.vm_id = unique_vm_id();
    request_.name = "contract";
  }

  TempDir dir_;
  std::shared_ptr<NetworkBackend> net_;
  NetworkRequest request_;
};

TEST_P(NetworkContract, SetupThenTeardownTwiceIsClean) {
  auto lease = net_->setup(request_);
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  EXPECT_EQ(lease->plugin, GetParam());
  for (const auto& ns : lease->namespaces) EXPECT_TRUE(std::filesystem::exists(ns)) << ns;
  ASSERT_TRUE(net_->teardown(*lease).ok());
  EXPECT_TRUE(net_->teardown(*lease).ok()) << "teardown must be idempotent";
  for (const auto& ns : lease->namespaces) {
    if (ns.string().rfind("/proc/", 0) != 0) {
      EXPECT_FALSE(std::filesystem::exists(ns)) << ns;
    }
  }
}

TEST_P(NetworkContract, TeardownOfALeaseNeverSetUpSucceeds) {
  NetworkLease lease;
  lease.plugin = GetParam();
  EXPECT_TRUE(net_->teardown(lease).ok());
}

class RefusingAttach final : public NetworkBackendWrapper {
 public:
  using NetworkBackendWrapper::NetworkBackendWrapper;
  Status attach(NetworkLease&, pid_t) override { return error(Errc::io, "injected attach failure"); }
};

TEST_P(NetworkContract, WrapperForwardsEverythingButTheOverriddenCall) {
  RefusingAttach wrapped(net_);
  auto lease = wrapped.setup(request_);
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  EXPECT_EQ(wrapped.attach(*lease, ::getpid()).message(), "injected attach failure");
  EXPECT_TRUE(wrapped.teardown(*lease).ok());
}

INSTANTIATE_TEST_SUITE_P(Plugins, NetworkContract,
                         ::testing::ValuesIn(plugins_of(PluginKind::network)), param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(NetworkContract);

}  // namespace
}  // namespace fcvm::contract
