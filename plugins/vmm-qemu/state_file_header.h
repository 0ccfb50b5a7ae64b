// StateFileHeader: the line vmm-qemu writes in front of QEMU's migration stream in a
// snapshot's state file.
//
// A RestoreSpec leaves vcpus, memory size, kernel, initrd and command line to the snapshot,
// and QEMU can only load a stream into a machine built with the same command line, so the
// state file carries them: one JSON line, then the raw stream. The device lists (drive and
// nic ids in order, agent port) let a restore refuse a layout that cannot match.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "fcvm/result.h"
#include "fcvm/vmm.h"

namespace fcvm::qemu {

struct StateFileHeader {
  static constexpr int kFormatVersion = 1;

  unsigned vcpus = 1;
  unsigned memory_mib = 0;
  std::filesystem::path kernel;
  std::filesystem::path initrd;
  std::string cmdline;  // as passed to QEMU (after vmm-qemu's own additions)
  std::vector<std::string> drive_ids;
  std::vector<std::string> nic_ids;
  std::vector<std::string> nic_macs;
  bool agent = false;
  std::string accel;  // informational: the accelerator the source ran under

  // The header of a VM launched from `spec` with the given final kernel command line.
  static StateFileHeader from_spec(const VmSpec& spec, const std::string& cmdline,
                                   const std::string& accel);

  // One JSON line ending in '\n'.
  std::string encode() const;

  // Reads the header of `state`; `stream_offset` receives where the migration stream
  // starts. Fails with invalid_argument for a file that is not a vmm-qemu state file.
  static Result<StateFileHeader> read(const std::filesystem::path& state,
                                      std::uint64_t* stream_offset);

  // Checks that `clone` (a RestoreSpec's layout) has the devices this snapshot was taken
  // with: the same drive ids and nic ids in order, and an agent socket iff the source had one.
  Status check_layout(const VmSpec& clone) const;
};

}  // namespace fcvm::qemu
