#include "plugin/capability_check.h"

#include <gtest/gtest.h>

namespace fcvm {
namespace {

// What vmm-qemu declares today.
VmmCapabilities qemu_like() {
  VmmCapabilities c;
  c.snapshot = true;
  c.restore_file_memory = true;
  return c;
}

BackendChoice choice(VmmCapabilities caps, std::string memory = {}) {
  BackendChoice c;
  c.vmm = "vmm-test";
  c.vmm_capabilities = caps;
  c.memory = std::move(memory);
  return c;
}

void expect_refusal(const Status& st, const std::string& names, const std::string& fix) {
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Errc::invalid_argument);
  EXPECT_NE(st.message().find(names), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(fix), std::string::npos) << st.message();
}

TEST(CapabilityCheck, EveryVmmBoots) {
  EXPECT_TRUE(check_capabilities(choice(VmmCapabilities{}), VmOperation::boot).ok());
}

TEST(CapabilityCheck, RestoreFromUffdNeedsAVmmThatCanAndAPageServer) {
  expect_refusal(check_capabilities(choice(qemu_like(), "memory-uffd"), VmOperation::restore_uffd),
                 "vmm-test cannot restore from a UFFD page server (memory backend memory-uffd)",
                 "use --memory file");
  VmmCapabilities uffd = qemu_like();
  uffd.restore_uffd_memory = true;
  EXPECT_TRUE(check_capabilities(choice(uffd, "memory-uffd"), VmOperation::restore_uffd).ok());
  expect_refusal(check_capabilities(choice(uffd), VmOperation::restore_uffd), "needs a memory backend",
                 "--memory memory-uffd");
}

TEST(CapabilityCheck, RestoreFromAFileNeedsAVmmThatCan) {
  EXPECT_TRUE(check_capabilities(choice(qemu_like(), "file"), VmOperation::restore_file).ok());
  expect_refusal(check_capabilities(choice(VmmCapabilities{}, "file"), VmOperation::restore_file),
                 "vmm-test cannot restore from a memory file (memory backend file)", "another VMM");
}

TEST(CapabilityCheck, SnapshotsNeedSnapshotAndDiffsDirtyPageTracking) {
  EXPECT_TRUE(check_capabilities(choice(qemu_like()), VmOperation::snapshot).ok());
  expect_refusal(check_capabilities(choice(VmmCapabilities{}), VmOperation::snapshot),
                 "vmm-test cannot snapshot", "fcvm plugins");
  BackendChoice diff = choice(qemu_like());
  diff.wants_diff_snapshot = true;
  expect_refusal(check_capabilities(diff, VmOperation::snapshot), "diff snapshots", "full snapshot");
}

TEST(CapabilityCheck, MmdsNeedsAVmmThatServesIt) {
  BackendChoice c = choice(qemu_like());
  c.wants_mmds = true;
  expect_refusal(check_capabilities(c, VmOperation::boot), "vmm-test cannot serve MMDS",
                 "--vmm vmm-firecracker");
  c.vmm_capabilities.mmds = true;
  EXPECT_TRUE(check_capabilities(c, VmOperation::boot).ok());
}

}  // namespace
}  // namespace fcvm
