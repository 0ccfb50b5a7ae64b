// Checks a combination of backends against an operation before anything is created, so an
// impossible pairing fails with one line naming the pairing and the fix instead of half-way
// through a launch.
#pragma once

#include <string>

#include "fcvm/result.h"
#include "fcvm/vmm.h"

namespace fcvm {

enum class VmOperation {
  boot,          // launch a fresh VM
  snapshot,      // snapshot a booted VM
  restore_file,  // restore with MemorySourceKind::file
  restore_uffd,  // restore with MemorySourceKind::uffd (a page server)
};

const char* to_string(VmOperation operation) noexcept;

// The backends chosen for one VM, by plugin name, and what the VMM says it can do.
struct BackendChoice {
  std::string vmm;
  VmmCapabilities vmm_capabilities;
  // Restores only: the memory plugin ("file", "memory-uffd"). Storage and network backends
  // declare no capabilities yet, so they take no part in the check.
  std::string memory;
  bool wants_mmds = false;            // the spec carries MMDS data
  bool wants_diff_snapshot = false;   // snapshot only: a diff against the last one
};

// ok, or invalid_argument naming the VMM, the other backend involved and the fix. Pure:
// no I/O, thread-safe, never throws.
Status check_capabilities(const BackendChoice& choice, VmOperation operation);

}  // namespace fcvm
