// FirecrackerOptions: the per-VM settings this plugin reads from VmSpec::vmm_options.
#pragma once

#include <nlohmann/json.hpp>

#include "fcvm/result.h"

namespace fcvm::firecracker {

enum class SnapshotType { full, diff };

const char* to_api(SnapshotType type) noexcept;  // "Full" / "Diff"

struct FirecrackerOptions {
  // What Vm::snapshot writes. diff: only the pages dirtied since the VM's last snapshot (or
  // since its restore), merged into a copy of that snapshot's memory image; the VM then
  // runs with dirty page tracking (machine-config / load track_dirty_pages).
  SnapshotType snapshot_type = SnapshotType::full;

  bool track_dirty_pages() const { return snapshot_type == SnapshotType::diff; }

  // Parses {"snapshot_type": "Full" | "Diff"} (null and {} give the defaults). Unknown keys
  // and bad values fail with invalid_argument naming the key.
  static Result<FirecrackerOptions> parse(const nlohmann::json& options);
};

}  // namespace fcvm::firecracker
