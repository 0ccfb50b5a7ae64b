// VmRecord: what the state store keeps about one fcvm process (a VM it runs, a snapshot it
// serves, or a clone it runs), persisted as one versioned JSON file.
//
// The record is the only thing a later process (`fcvm ls`, `fcvm gc`) knows about the
// resources the process holds, so every lease a backend hands out is recorded here before
// the resource is used.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "fcvm/network.h"
#include "fcvm/plugin.h"
#include "fcvm/result.h"
#include "fcvm/storage.h"
#include "state/health_state.h"
#include "state/process_identity.h"

namespace fcvm {

enum class VmType { vm, serve, clone };
enum class VmStatus { creating, running, stopping, exited, failed };

const char* to_string(VmType type) noexcept;
const char* to_string(VmStatus status) noexcept;
std::optional<VmType> parse_vm_type(std::string_view text) noexcept;
std::optional<VmStatus> parse_vm_status(std::string_view text) noexcept;

struct VmRecord {
  // The record format written by this build; files with a larger version are refused.
  static constexpr int kVersion = 1;

  std::string id;    // 12 lowercase hex digits; also the file name
  std::string name;  // see validate_vm_name
  VmType type = VmType::vm;
  ProcessIdentity process;               // the fcvm process this record belongs to
  std::optional<ProcessIdentity> serve;  // clones: the `snapshot serve` process they use
  // vm/clone: the VMM process once it runs (its memory is accounted in `fcvm ls --json`; a
  // restarted uffd serve finds a clone's VMM by it).
  std::optional<ProcessIdentity> vmm;
  std::string snapshot;                  // serve/clone: the snapshot's name
  std::string image;                     // vm: the image reference
  std::map<PluginKind, std::string> plugins;  // backends in use, by kind
  std::optional<NetworkLease> network;
  std::optional<DiskLease> disk;
  std::filesystem::path vm_dir;          // the process's private directory
  std::string created;                   // RFC3339 UTC, "2024-05-01T12:00:00Z"
  VmStatus status = VmStatus::creating;
  std::optional<int> exit_code;
  std::string error;                     // failed: why, one line for the user
  std::optional<HealthState> health;     // VMs with a health check: its last state
  bool paused = false;                   // vCPUs stopped by `fcvm pause` (status stays running)
  nlohmann::json extra = nlohmann::json::object();  // room for later features

  bool alive() const { return process.alive(); }
};

// The JSON form, with "version": VmRecord::kVersion.
nlohmann::json to_json(const VmRecord& record);
// Parses a record. Refuses a missing or newer version (naming the upgrade), and any field
// of the wrong type, with the field's name in the message.
Result<VmRecord> vm_record_from_json(const nlohmann::json& doc);

// Names: [a-z0-9][a-z0-9_.-]{0,62}. Names reach file names, network device names and log
// lines, so nothing else is accepted. The error says what is allowed.
Status validate_vm_name(std::string_view name);

// Id: exactly 12 lowercase hex digits.
bool is_valid_vm_id(std::string_view id) noexcept;

// 12 random lowercase hex digits (from the kernel's random source).
std::string random_vm_id();
// "fcvm-" + 6 random hex digits.
std::string random_vm_name();

// The current time as RFC3339 UTC with second precision.
std::string now_rfc3339();

}  // namespace fcvm
