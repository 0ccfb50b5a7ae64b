#include "client_record.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

#include "fcvm/atomic_file.h"

namespace fcvm::uffd {

namespace fs = std::filesystem;

std::optional<std::uint64_t> process_start_time(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return std::nullopt;
  // The command name may hold spaces and parentheses: fields restart after the last ')'.
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 22) {
      std::uint64_t v = 0;
      if (std::from_chars(field.data(), field.data() + field.size(), v).ec != std::errc()) break;
      return v;
    }
  }
  return std::nullopt;
}

fs::path ClientRecord::path_in(const fs::path& state_dir, pid_t pid) {
  return state_dir / "clients" / (std::to_string(pid) + ".json");
}

Status ClientRecord::save(const fs::path& state_dir) const {
  const fs::path dir = state_dir / "clients";
  if (::mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return errno_status("create state dir " + state_dir.string());
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return errno_status("create " + dir.string());
  }
  nlohmann::json j = {{"version", kVersion}, {"pid", pid}, {"start_time", start_time}};
  j["regions"] = nlohmann::json::array();
  for (const auto& r : regions) j["regions"].push_back(r.to_json());
  j["removed"] = nlohmann::json::array();
  for (auto [s, e] : removed) j["removed"].push_back({s, e});
  return write_file_atomic(path_in(state_dir, pid), j.dump(), 0600);
}

Result<ClientRecord> ClientRecord::load(const fs::path& state_dir, pid_t pid,
                                        std::uint64_t image_size, std::uint64_t host_page_size) {
  const fs::path path = path_in(state_dir, pid);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return error(Errc::not_found, "no record of a client with pid " + std::to_string(pid) +
                                      " in " + state_dir.string());
  }
  auto text = read_file(path);
  if (!text) return text.status();
  auto j = nlohmann::json::parse(*text, nullptr, false);
  auto bad = [&](const std::string& what) {
    return error(Errc::protocol, "client record " + path.string() + ": " + what +
                                     "; remove it and stop that VM");
  };
  if (!j.is_object() || j.value("version", 0) != kVersion) return bad("not a version-1 record");
  ClientRecord rec;
  try {
    rec.pid = j.at("pid").get<pid_t>();
    rec.start_time = j.at("start_time").get<std::uint64_t>();
    for (const auto& range : j.at("removed")) {
      rec.removed.emplace(range.at(0).get<std::uint64_t>(), range.at(1).get<std::uint64_t>());
    }
  } catch (const nlohmann::json::exception& e) {
    return bad(e.what());
  }
  if (rec.pid != pid) return bad("names pid " + std::to_string(rec.pid));
  if (!j.contains("regions")) return bad("no regions");
  auto regions = regions_from_json(j["regions"], image_size, host_page_size);
  if (!regions) return bad(regions.status().message());
  rec.regions = std::move(*regions);
  return rec;
}

void ClientRecord::remove(const fs::path& state_dir, pid_t pid) {
  std::error_code ec;
  fs::remove(path_in(state_dir, pid), ec);
}

std::vector<pid_t> ClientRecord::list(const fs::path& state_dir) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(state_dir / "clients", ec)) {
    const std::string name = entry.path().filename().string();
    pid_t pid = 0;
    auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (err == std::errc() && std::string_view(end) == ".json" && pid > 0) pids.push_back(pid);
  }
  std::sort(pids.begin(), pids.end());
  return pids;
}

}  // namespace fcvm::uffd
