// GuestAssets: the kernel and initramfs a VM boots.
#pragma once

#include <filesystem>
#include <optional>

#include "fcvm/log.h"
#include "fcvm/result.h"

namespace fcvm {

struct GuestAssets {
  std::filesystem::path kernel;
  std::filesystem::path initrd;
};

// The agent binary that goes into the initramfs: beside the fcvm binary's libdir
// (<exe>/../lib/fcvm/fc-agent), in the build tree and in an install prefix alike.
std::filesystem::path agent_binary_path();

// The guest assets in `data_dir`: `kernel_override` or the kernel `fcvm setup kernel` built
// (a clear error naming both fixes when there is none), and the initramfs, built here if
// missing (it takes well under a second).
Result<GuestAssets> find_guest_assets(const std::filesystem::path& data_dir,
                                      const std::optional<std::filesystem::path>& kernel_override,
                                      LoggerPtr log);

}  // namespace fcvm
