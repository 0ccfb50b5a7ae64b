#include "qemu_config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "accel_choice.h"
#include "host_tsc.h"
#include "kvm_host.h"
#include "fcvm/temp_dir.h"

namespace fcvm::qemu {
namespace {

using nlohmann::json;

TEST(QemuConfig, Defaults) {
  for (const json& j : {json(nullptr), json::object()}) {
    auto c = QemuConfig::parse(j, nullptr);
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_EQ(c->accel, AccelMode::automatic);
    EXPECT_EQ(c->binary, "qemu-system-x86_64");
    EXPECT_EQ(c->accel_source, "default");
  }
}

TEST(QemuConfig, ReadsKeys) {
  auto c = QemuConfig::parse({{"accel", "tcg"}, {"binary", "/opt/qemu/bin/qemu-system-x86_64"}}, nullptr);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->accel, AccelMode::tcg);
  EXPECT_EQ(c->accel_source, "config");
  EXPECT_EQ(c->binary, "/opt/qemu/bin/qemu-system-x86_64");
}

TEST(QemuConfig, EnvironmentOverridesConfig) {
  auto c = QemuConfig::parse({{"accel", "kvm"}}, "tcg");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->accel, AccelMode::tcg);
  EXPECT_EQ(c->accel_source, "FCVM_QEMU_ACCEL");
  c = QemuConfig::parse({{"accel", "kvm"}}, "");  // set but empty: no override
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->accel, AccelMode::kvm);
}

TEST(QemuConfig, RejectsUnknownKeysAndValuesByName) {
  struct Case {
    json config;
    const char* env;
    const char* fragment;
  };
  const Case cases[] = {
      {{{"acel", "tcg"}}, nullptr, "unknown config key 'acel'"},
      {{{"accel", "hvf"}}, nullptr, "'accel'"},
      {{{"accel", 1}}, nullptr, "'accel'"},
      {{{"binary", ""}}, nullptr, "'binary'"},
      {{{"binary", json::array()}}, nullptr, "'binary'"},
      {json::array(), nullptr, "object"},
      {json::object(), "whpx", "FCVM_QEMU_ACCEL"},
  };
  for (const auto& c : cases) {
    auto r = QemuConfig::parse(c.config, c.env);
    ASSERT_FALSE(r.ok()) << c.config.dump();
    EXPECT_EQ(r.status().code(), Errc::invalid_argument);
    EXPECT_NE(r.status().message().find(c.fragment), std::string::npos) << r.status().message();
  }
}

QemuConfig with_mode(AccelMode mode) {
  QemuConfig c;
  c.accel = mode;
  c.accel_source = mode == AccelMode::automatic ? "default" : "config";
  return c;
}

TEST(AccelChoice, AutoOnPvmHostPicksTcg) {
  KvmHost pvm;
  pvm.kvm_pvm = true;
  pvm.dev_kvm_rw = true;
  auto c = AccelChoice::decide(with_mode(AccelMode::automatic), pvm);
  EXPECT_EQ(c.accel, Accel::tcg);
  EXPECT_TRUE(c.usable);
  EXPECT_EQ(c.reason, "tcg: /dev/kvm is PVM-backed (kvm_pvm loaded, no kvm_intel/kvm_amd)");
}

TEST(AccelChoice, AutoWithHardwareKvmPicksKvm) {
  KvmHost intel;
  intel.kvm_intel = true;
  intel.dev_kvm_rw = true;
  auto c = AccelChoice::decide(with_mode(AccelMode::automatic), intel);
  EXPECT_EQ(c.accel, Accel::kvm);
  EXPECT_NE(c.reason.find("kvm_intel"), std::string::npos);
  KvmHost amd;
  amd.kvm_amd = true;
  amd.dev_kvm_rw = true;
  EXPECT_EQ(AccelChoice::decide(with_mode(AccelMode::automatic), amd).accel, Accel::kvm);
}

TEST(AccelChoice, AutoWithoutAccessFallsBackToTcg) {
  KvmHost h;
  h.kvm_intel = true;
  h.dev_kvm_error = "Permission denied";
  auto c = AccelChoice::decide(with_mode(AccelMode::automatic), h);
  EXPECT_EQ(c.accel, Accel::tcg);
  EXPECT_NE(c.reason.find("Permission denied"), std::string::npos);
  EXPECT_EQ(AccelChoice::decide(with_mode(AccelMode::automatic), KvmHost{}).accel, Accel::tcg);
}

TEST(AccelChoice, ForcedModes) {
  KvmHost none;
  none.dev_kvm_error = "No such file or directory";
  auto tcg = AccelChoice::decide(with_mode(AccelMode::tcg), none);
  EXPECT_EQ(tcg.accel, Accel::tcg);
  EXPECT_TRUE(tcg.usable);
  auto kvm = AccelChoice::decide(with_mode(AccelMode::kvm), none);
  EXPECT_EQ(kvm.accel, Accel::kvm);
  EXPECT_FALSE(kvm.usable);
  EXPECT_NE(kvm.reason.find("No such file"), std::string::npos);
  KvmHost pvm;
  pvm.kvm_pvm = true;
  pvm.dev_kvm_rw = true;
  auto forced = AccelChoice::decide(with_mode(AccelMode::kvm), pvm);
  EXPECT_EQ(forced.accel, Accel::kvm);
  EXPECT_TRUE(forced.usable);
  EXPECT_NE(forced.reason.find("PVM"), std::string::npos);
}

TEST(KvmHost, DetectReadsModuleTree) {
  auto dir = TempDir::create("fcvm-kvmhost-test-");
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  const std::filesystem::path root = dir->path();
  std::filesystem::create_directories(root / "module" / "kvm_pvm");
  std::ofstream(root / "kvm").put('x');
  auto h = KvmHost::detect(root / "module", root / "kvm");
  EXPECT_TRUE(h.kvm_pvm);
  EXPECT_FALSE(h.kvm_intel);
  EXPECT_FALSE(h.kvm_amd);
  EXPECT_TRUE(h.dev_kvm_rw);
  auto missing = KvmHost::detect(root / "nothing", root / "no-kvm");
  EXPECT_FALSE(missing.dev_kvm_rw);
  EXPECT_EQ(missing.dev_kvm_error, "No such file or directory");
  std::filesystem::remove_all(root);
}

TEST(HostTsc, MeasuresAStableFrequency) {
  const unsigned a = HostTsc::measure_khz();
  if (a == 0) GTEST_SKIP() << "no constant-rate TSC on this host";
  const unsigned b = HostTsc::measure_khz();
  EXPECT_GT(a, 100000u) << "below 100 MHz is not a real TSC";
  // Two measurements agree within 0.1 %.
  EXPECT_LT(std::abs(static_cast<double>(a) - b) / a, 0.001) << a << " vs " << b;
  EXPECT_EQ(HostTsc::khz(), HostTsc::khz());
}

}  // namespace
}  // namespace fcvm::qemu
