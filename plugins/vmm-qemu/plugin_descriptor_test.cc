// The built module exports the descriptor under the SDK's symbol and its factory works.
// (The loader-based contract suite checks the full handshake; this only guards the export.)
#include <dlfcn.h>

#include <gtest/gtest.h>

#include <cstring>

#include "fcvm/plugin.h"
#include "fcvm/vmm.h"

namespace fcvm::qemu {
namespace {

const PluginDescriptor* load_descriptor() {
  void* lib = ::dlopen(FCVM_VMM_QEMU_PLUGIN, RTLD_NOW | RTLD_LOCAL);  // never closed, as the host does
  EXPECT_NE(lib, nullptr) << ::dlerror();
  if (lib == nullptr) return nullptr;
  // Boost.DLL's alias is a pointer variable holding the descriptor's address.
  void* alias = ::dlsym(lib, FCVM_STRINGIFY(FCVM_PLUGIN_SYMBOL));
  EXPECT_NE(alias, nullptr) << ::dlerror();
  if (alias == nullptr) return nullptr;
  return static_cast<const PluginDescriptor*>(*static_cast<const void* const*>(alias));
}

TEST(VmmQemuPlugin, ExportsItsDescriptor) {
  const PluginDescriptor* d = load_descriptor();
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->abi_major, static_cast<std::uint32_t>(FCVM_ABI_MAJOR));
  EXPECT_EQ(d->abi_minor, static_cast<std::uint32_t>(FCVM_ABI_MINOR));
  EXPECT_STREQ(d->fingerprint, FCVM_BUILD_FINGERPRINT);
  EXPECT_EQ(d->kind, PluginKind::vmm);
  EXPECT_STREQ(d->name, "vmm-qemu");
  EXPECT_NE(d->create, nullptr);
}

TEST(VmmQemuPlugin, FactoryNamesABadKey) {
  const PluginDescriptor* d = load_descriptor();
  ASSERT_NE(d, nullptr);
  PluginContext ctx{null_logger(), {{"accel", "tcg"}, {"cpus", 2}}, "/tmp"};
  auto backend = d->create(ctx);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), Errc::invalid_argument);
  EXPECT_NE(backend.status().message().find("'cpus'"), std::string::npos) << backend.status().message();
}

TEST(VmmQemuPlugin, FactoryMakesAProbingVmmBackend) {
  const PluginDescriptor* d = load_descriptor();
  ASSERT_NE(d, nullptr);
  PluginContext ctx{null_logger(), {{"accel", "tcg"}}, "/tmp"};
  auto backend = d->create(ctx);
  ASSERT_TRUE(backend.ok()) << backend.status().message();
  EXPECT_EQ((*backend)->kind(), PluginKind::vmm);
  EXPECT_NE(dynamic_cast<VmmBackend*>(backend->get()), nullptr);
  const Probe p = (*backend)->probe();
  EXPECT_TRUE(p.available) << p.reason;
  EXPECT_NE(p.reason.find("tcg"), std::string::npos) << p.reason;
}

}  // namespace
}  // namespace fcvm::qemu
