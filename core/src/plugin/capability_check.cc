#include "plugin/capability_check.h"

namespace fcvm {
namespace {

Status refuse(const std::string& message) { return error(Errc::invalid_argument, message); }

}  // namespace

const char* to_string(VmOperation operation) noexcept {
  switch (operation) {
    case VmOperation::boot: return "boot";
    case VmOperation::snapshot: return "snapshot";
    case VmOperation::restore_file: return "restore from a memory file";
    case VmOperation::restore_uffd: return "restore from a UFFD page server";
  }
  return "unknown operation";
}

Status check_capabilities(const BackendChoice& c, VmOperation operation) {
  const VmmCapabilities& caps = c.vmm_capabilities;
  if (c.wants_mmds && !caps.mmds) {
    return refuse(c.vmm + " cannot serve MMDS data to the guest; drop the metadata or choose a "
                          "VMM with MMDS (--vmm vmm-firecracker)");
  }
  switch (operation) {
    case VmOperation::boot:
      return ok_status();
    case VmOperation::snapshot:
      if (!caps.snapshot) {
        return refuse(c.vmm + " cannot snapshot a VM; run it with a VMM that can (fcvm plugins "
                              "lists them)");
      }
      if (c.wants_diff_snapshot && !caps.dirty_page_tracking) {
        return refuse(c.vmm + " cannot take diff snapshots (no dirty-page tracking); take a full "
                              "snapshot instead");
      }
      return ok_status();
    case VmOperation::restore_file:
      if (!caps.restore_file_memory) {
        return refuse(c.vmm + " cannot restore from a memory file" +
                      (c.memory.empty() ? std::string() : " (memory backend " + c.memory + ")") +
                      "; use --memory memory-uffd if it can serve pages, or another VMM");
      }
      return ok_status();
    case VmOperation::restore_uffd:
      if (!caps.restore_uffd_memory) {
        return refuse(c.vmm + " cannot restore from a UFFD page server" +
                      (c.memory.empty() ? std::string() : " (memory backend " + c.memory + ")") +
                      "; use --memory file, or a VMM that restores from UFFD (vmm-firecracker)");
      }
      if (c.memory.empty()) {
        return refuse("restore from a UFFD page server needs a memory backend that serves pages; "
                      "pass --memory memory-uffd");
      }
      return ok_status();
  }
  return error(Errc::internal, "unknown VM operation");
}

}  // namespace fcvm
