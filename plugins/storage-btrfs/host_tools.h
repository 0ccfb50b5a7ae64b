// Host tools storage-btrfs runs (mkfs.ext4, mkfs.btrfs), looked up where Debian puts them.
#pragma once

#include <filesystem>
#include <string>

#include "fcvm/result.h"

namespace fcvm::btrfs {

// The tool's absolute path: PATH first, then the sbin dirs a non-root PATH often lacks.
// Empty when absent.
std::filesystem::path find_tool(const std::string& name);

// find_tool, or unavailable naming the Debian package to install.
Result<std::filesystem::path> require_tool(const std::string& name, const std::string& package);

}  // namespace fcvm::btrfs
