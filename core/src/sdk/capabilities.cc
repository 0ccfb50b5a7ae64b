#include "fcvm/capabilities.h"

#include <initializer_list>
#include <utility>

namespace fcvm {
namespace {

// "a,b,c" of the words whose flag is set.
std::string join_set(std::initializer_list<std::pair<bool, const char*>> flags) {
  std::string out;
  for (const auto& [set, word] : flags) {
    if (!set) continue;
    if (!out.empty()) out += ',';
    out += word;
  }
  return out;
}

}  // namespace

const char* to_string(AgentTransport transport) noexcept {
  switch (transport) {
    case AgentTransport::virtio_serial: return "virtio_serial";
    case AgentTransport::vsock: return "vsock";
  }
  return "unknown";
}

const char* to_string(MemorySourceKind kind) noexcept {
  switch (kind) {
    case MemorySourceKind::file: return "file";
    case MemorySourceKind::uffd: return "uffd";
  }
  return "unknown";
}

void to_json(nlohmann::json& j, const VmmCapabilities& caps) {
  j = {{"snapshot", caps.snapshot},
       {"restore_file_memory", caps.restore_file_memory},
       {"restore_uffd_memory", caps.restore_uffd_memory},
       {"dirty_page_tracking", caps.dirty_page_tracking},
       {"mmds", caps.mmds},
       {"agent_transport", to_string(caps.agent_transport)}};
}

void to_json(nlohmann::json& j, const MemoryCapabilities& caps) {
  j = {{"needs_server", caps.needs_server},
       {"source_kind", to_string(caps.source_kind)},
       {"adopts_clients", caps.adopts_clients},
       {"prefetch", caps.prefetch}};
}

std::string describe(const VmmCapabilities& caps) {
  std::string words = join_set({{caps.snapshot, "snapshot"},
                                {caps.restore_file_memory, "restore-file"},
                                {caps.restore_uffd_memory, "restore-uffd"},
                                {caps.dirty_page_tracking, "dirty-pages"},
                                {caps.mmds, "mmds"}});
  if (!words.empty()) words += ',';
  words += caps.agent_transport == AgentTransport::vsock ? "agent-vsock" : "agent-virtio-serial";
  return words;
}

std::string describe(const MemoryCapabilities& caps) {
  std::string words = to_string(caps.source_kind);
  const std::string flags = join_set({{caps.needs_server, "server"},
                                      {caps.adopts_clients, "adopt"},
                                      {caps.prefetch, "prefetch"}});
  if (!flags.empty()) words += "," + flags;
  return words;
}

std::optional<BackendCapabilities> capabilities_of(const Backend& backend) {
  // The registry refuses a backend whose kind() differs from its descriptor's, so kind()
  // names the interface it implements.
  switch (backend.kind()) {
    case PluginKind::vmm: {
      const VmmCapabilities caps = static_cast<const VmmBackend&>(backend).capabilities();
      return BackendCapabilities{caps, describe(caps)};
    }
    case PluginKind::memory: {
      const MemoryCapabilities caps = static_cast<const MemoryBackend&>(backend).capabilities();
      return BackendCapabilities{caps, describe(caps)};
    }
    case PluginKind::network:
    case PluginKind::storage:
      break;
  }
  return std::nullopt;
}

}  // namespace fcvm
