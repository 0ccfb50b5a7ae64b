// Real Firecracker on hardware KVM: boots the fcvm guest kernel with the plugin, connects
// to the guest agent over vsock, pauses, snapshots and restores a clone. SKIPPED (with the
// reason) where Firecracker or hardware KVM is missing, or without FCVM_TEST_KERNEL and
// FCVM_TEST_ASSETS (the kernel and initramfs scripts/test provides).
#include <dlfcn.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "fcvm/plugin.h"
#include "fcvm/vmm.h"

namespace fcvm::firecracker {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<VmmBackend> real_backend(std::string& why_not) {
  void* lib = ::dlopen(FCVM_VMM_FIRECRACKER_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    why_not = ::dlerror();
    return nullptr;
  }
  void* alias = ::dlsym(lib, FCVM_STRINGIFY(FCVM_PLUGIN_SYMBOL));
  const auto* d = static_cast<const PluginDescriptor*>(*static_cast<const void* const*>(alias));
  const char* binary = std::getenv("FCVM_FIRECRACKER_BINARY");
  nlohmann::json config = nlohmann::json::object();
  if (binary != nullptr) config["binary"] = binary;
  auto backend = d->create({null_logger(), config, "/tmp"});
  if (!backend) {
    why_not = backend.status().message();
    return nullptr;
  }
  std::unique_ptr<VmmBackend> vmm(dynamic_cast<VmmBackend*>(backend->release()));
  const Probe p = vmm->probe();
  if (!p.available) {
    why_not = "vmm-firecracker unavailable here: " + p.reason;
    return nullptr;
  }
  return vmm;
}

TEST(RealFirecracker, BootsConnectsSnapshotsAndRestores) {
  std::string why_not;
  auto backend = real_backend(why_not);
  if (!backend) GTEST_SKIP() << why_not;
  const char* kernel = std::getenv("FCVM_TEST_KERNEL");
  const char* assets = std::getenv("FCVM_TEST_ASSETS");
  if (kernel == nullptr || assets == nullptr) {
    GTEST_SKIP() << "FCVM_TEST_KERNEL and FCVM_TEST_ASSETS are not set (run through scripts/test)";
  }
  fs::path initrd;  // <assets>/initramfs/<key>/initrd.gz, as `fcvm setup` caches it
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(assets) / "initramfs", ec)) {
    if (fs::exists(e.path() / "initrd.gz")) initrd = e.path() / "initrd.gz";
  }
  if (initrd.empty()) GTEST_SKIP() << "no initramfs under " << assets << "/initramfs: run 'fcvm setup'";

  char tmpl[] = "/tmp/fcvm-realfc-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const fs::path root = tmpl;
  VmSpec spec;
  spec.name = "realfc";
  spec.dir = root / "vm";
  spec.memory_mib = 256;
  spec.kernel = kernel;
  spec.initrd = initrd;
  spec.cmdline = "console=ttyS0 quiet panic=-1";
  spec.agent_socket = spec.dir / "agent.sock";
  spec.console_log = spec.dir / "console.log";
  auto vm = backend->launch(spec);
  ASSERT_TRUE(vm.ok()) << vm.status().message();
  auto agent = (*vm)->connect_agent(std::chrono::steady_clock::now() + std::chrono::seconds(60));
  ASSERT_TRUE(agent.ok()) << agent.status().message();
  agent->reset();
  ASSERT_TRUE((*vm)->pause().ok());
  const SnapshotFiles files{root / "state", root / "mem"};
  ASSERT_TRUE((*vm)->snapshot(files).ok());
  (*vm)->kill();

  RestoreSpec r;
  r.vm = spec;
  r.vm.dir = root / "clone";
  r.vm.agent_socket = r.vm.dir / "agent.sock";
  r.vm.console_log = r.vm.dir / "console.log";
  r.snapshot = files;
  r.memory = {MemorySourceKind::file, files.memory};
  auto clone = backend->restore(r);
  ASSERT_TRUE(clone.ok()) << clone.status().message();
  auto clone_agent = (*clone)->connect_agent(std::chrono::steady_clock::now() + std::chrono::seconds(60));
  EXPECT_TRUE(clone_agent.ok()) << clone_agent.status().message();
  (*clone)->kill();
  fs::remove_all(root);
}

}  // namespace
}  // namespace fcvm::firecracker
