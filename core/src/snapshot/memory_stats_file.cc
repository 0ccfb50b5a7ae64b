#include "snapshot/memory_stats_file.h"

#include "fcvm/atomic_file.h"
#include "state/vm_record.h"

namespace fcvm {

std::filesystem::path MemoryStatsFile::in(const std::filesystem::path& serve_dir) {
  return serve_dir / "memory-stats.json";
}

Status MemoryStatsFile::write(const std::filesystem::path& serve_dir, const std::vector<MemoryClientStats>& clients) {
  nlohmann::json j = {{"version", kVersion}, {"updated", now_rfc3339()}, {"clients", nlohmann::json::array()}};
  for (const auto& c : clients) j["clients"].push_back(c.to_json());
  return write_file_atomic(in(serve_dir), j.dump(), 0600);
}

nlohmann::json MemoryStatsFile::read_clients(const std::filesystem::path& serve_dir) {
  auto text = read_file(in(serve_dir));
  if (!text) return nlohmann::json::array();
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || j.value("version", 0) != kVersion || !j.contains("clients") || !j["clients"].is_array()) {
    return nlohmann::json::array();
  }
  return j["clients"];
}

std::optional<nlohmann::json> MemoryStatsFile::client(const std::filesystem::path& serve_dir, pid_t pid) {
  for (const auto& c : read_clients(serve_dir)) {
    if (c.is_object() && c.value("pid", 0) == pid) return c;
  }
  return std::nullopt;
}

}  // namespace fcvm
