// What a backend can do, as data: one JSON form (every field by name) and one short form
// (comma-separated words) for each capability struct, so every front end (`fcvm plugins`,
// the HTTP API, the shim) shows them the same way.
//
// JSON field names are the struct's member names; enum values are their enumerator names
// ("virtio_serial", "uffd"). A field added to a struct must be added here too (the SDK's
// test lists every field). Nothing here throws, except nlohmann's own allocation failures.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "fcvm/memory.h"
#include "fcvm/plugin.h"
#include "fcvm/visibility.h"
#include "fcvm/vmm.h"

namespace fcvm {

FCVM_SDK_API const char* to_string(AgentTransport transport) noexcept;  // "virtio_serial", "vsock"
FCVM_SDK_API const char* to_string(MemorySourceKind kind) noexcept;     // "file", "uffd"

// {"snapshot": true, "restore_file_memory": true, ..., "agent_transport": "vsock"}
FCVM_SDK_API void to_json(nlohmann::json& j, const VmmCapabilities& caps);
// {"needs_server": true, "source_kind": "uffd", "adopts_clients": true, "prefetch": true}
FCVM_SDK_API void to_json(nlohmann::json& j, const MemoryCapabilities& caps);

// The true flags as short words, then the enum: "snapshot,restore-file,restore-uffd,
// dirty-pages,mmds,agent-vsock".
FCVM_SDK_API std::string describe(const VmmCapabilities& caps);
// The source kind, then the true flags: "uffd,server,adopt,prefetch"; "file".
FCVM_SDK_API std::string describe(const MemoryCapabilities& caps);

// A backend's capabilities in both forms, whatever its kind.
struct BackendCapabilities {
  nlohmann::json fields = nlohmann::json::object();  // to_json of its struct
  std::string words;                                  // describe() of its struct
};

// The capabilities `backend` declares, through the interface of its kind(); nullopt for a
// kind whose interface declares none (network, storage). May call into the plugin
// (capabilities() is const and cheap by contract).
FCVM_SDK_API std::optional<BackendCapabilities> capabilities_of(const Backend& backend);

}  // namespace fcvm
