// A network plugin for the loader tests. Each fixture is this file built with different
// FIXTURE_* definitions (see tests/loader/CMakeLists.txt); defaults make the good one.
#include <stdexcept>

#include "fcvm/network.h"
#include "fcvm/vmm.h"

#ifndef FIXTURE_NAME
#define FIXTURE_NAME "fixture-good"
#endif
#ifndef FIXTURE_ABI_MAJOR
#define FIXTURE_ABI_MAJOR FCVM_ABI_MAJOR
#endif
#ifndef FIXTURE_ABI_MINOR
#define FIXTURE_ABI_MINOR FCVM_ABI_MINOR
#endif
#ifndef FIXTURE_FINGERPRINT
#define FIXTURE_FINGERPRINT FCVM_BUILD_FINGERPRINT
#endif
#ifndef FIXTURE_KIND
#define FIXTURE_KIND fcvm::PluginKind::network
#endif
// 0: creates a backend; 1: throws; 2: returns an error.
#ifndef FIXTURE_FACTORY
#define FIXTURE_FACTORY 0
#endif
// 1: the backend is a VmmBackend (kind vmm) whose probe says FIXTURE_VMM_AVAILABLE.
#ifndef FIXTURE_VMM
#define FIXTURE_VMM 0
#endif
#ifndef FIXTURE_VMM_AVAILABLE
#define FIXTURE_VMM_AVAILABLE 0
#endif

namespace {

class FixtureNetwork final : public fcvm::NetworkBackend {
 public:
  explicit FixtureNetwork(const fcvm::PluginContext& ctx) : ctx_(ctx) {}

  fcvm::Probe probe() override {
    return fcvm::Probe::yes(std::string(FIXTURE_NAME) + " probe ran, greeting=" +
                            ctx_.config.value("greeting", std::string("none")));
  }
  fcvm::Result<fcvm::NetworkLease> setup(const fcvm::NetworkRequest& request) override {
    fcvm::NetworkLease lease;
    lease.plugin = FIXTURE_NAME;
    lease.tap = "tap-" + request.vm_id;
    return lease;
  }
  fcvm::Status attach(fcvm::NetworkLease&, pid_t) override { return fcvm::ok_status(); }
  fcvm::Result<fcvm::NetworkLease> setup_clone(const fcvm::NetworkLease&,
                                               const fcvm::NetworkRequest& request) override {
    return setup(request);
  }
  fcvm::Status teardown(const fcvm::NetworkLease&) override { return fcvm::ok_status(); }

 private:
  fcvm::PluginContext ctx_;
};

class FixtureVmm final : public fcvm::VmmBackend {
 public:
  fcvm::Probe probe() override {
    if (FIXTURE_VMM_AVAILABLE) return fcvm::Probe::yes(FIXTURE_NAME " fixture is available");
    return fcvm::Probe::no(FIXTURE_NAME " fixture: no hypervisor here");
  }
  fcvm::VmmCapabilities capabilities() const override { return {}; }
  fcvm::Result<std::unique_ptr<fcvm::Vm>> launch(const fcvm::VmSpec&) override {
    return fcvm::error(fcvm::Errc::unavailable, "fixture cannot launch");
  }
  fcvm::Result<std::unique_ptr<fcvm::Vm>> restore(const fcvm::RestoreSpec&) override {
    return fcvm::error(fcvm::Errc::unavailable, "fixture cannot restore");
  }
};

fcvm::Result<std::unique_ptr<fcvm::Backend>> create(const fcvm::PluginContext& ctx) {
#if FIXTURE_FACTORY == 1
  (void)ctx;
  throw std::runtime_error("fixture factory exploded");
#elif FIXTURE_FACTORY == 2
  (void)ctx;
  return fcvm::error(fcvm::Errc::invalid_argument,
                     "plugin_config.fixture-erroring.mode: expected \"fast\"");
#elif FIXTURE_VMM
  (void)ctx;
  return std::unique_ptr<fcvm::Backend>(std::make_unique<FixtureVmm>());
#else
  return std::unique_ptr<fcvm::Backend>(std::make_unique<FixtureNetwork>(ctx));
#endif
}

const fcvm::PluginDescriptor fixture_descriptor = {
    FIXTURE_ABI_MAJOR,
    FIXTURE_ABI_MINOR,
    FIXTURE_FINGERPRINT,
    static_cast<fcvm::PluginKind>(FIXTURE_KIND),
    FIXTURE_NAME,
    "1.2.3",
    "loader test fixture",
    &create,
};

}  // namespace

FCVM_PLUGIN(fixture_descriptor)
