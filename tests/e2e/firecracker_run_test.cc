// `fcvm podman run --vmm vmm-firecracker` against a real Firecracker. Runs where the
// plugin's probe says it is available (a firecracker binary and hardware KVM); elsewhere
// SKIPPED with the probe's reason, as `fcvm plugins` reports it.
#include <gtest/gtest.h>

#include "fcvm_cli.h"

namespace fcvm::test {
namespace {

// Why vmm-firecracker cannot run here, from `fcvm plugins --json`, or empty.
std::string firecracker_unavailable(const FcvmCli& cli) {
  auto r = cli.run({"plugins", "--json"});
  if (r.code != 0) return "fcvm plugins failed: " + r.err;
  for (const auto& p : nlohmann::json::parse(r.out)) {
    if (p.value("name", "") != "vmm-firecracker") continue;
    return p.value("available", false) ? "" : "vmm-firecracker unavailable: " + p.value("reason", "");
  }
  return "the vmm-firecracker plugin was not found";
}

TEST(FirecrackerRun, HelloImageUnderFirecracker) {
  if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
  FcvmCli cli;
  if (auto why = firecracker_unavailable(cli); !why.empty()) GTEST_SKIP() << why;
  auto r = cli.run({"podman", "run", "--vmm", "vmm-firecracker", "--kernel", FcvmCli::kernel().string(),
                    "--rm", FcvmCli::hello_image(), "sh", "-c", "echo under-firecracker; exit 3"});
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(r.out, "under-firecracker\n") << r.err;
  EXPECT_TRUE(cli.ls().empty()) << "--rm left a record";
}

}  // namespace
}  // namespace fcvm::test
