#include "fcvm/allocation_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <set>

#include "fcvm/atomic_file.h"
#include "fcvm/unique_fd.h"

namespace fcvm {

Status AllocationFile::update(const std::function<Status(nlohmann::json& doc)>& change) {
  std::error_code ec;
  std::filesystem::create_directories(path_.parent_path(), ec);
  if (ec) return error(Errc::io, "create " + path_.parent_path().string() + ": " + ec.message());
  ::chmod(path_.parent_path().c_str(), 0700);
  const std::string lock_path = path_.string() + ".lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return errno_status("open " + lock_path);
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return errno_status("lock " + lock_path);
  }
  nlohmann::json doc = {{"version", 1}, {"holders", nlohmann::json::object()}};
  if (std::filesystem::exists(path_)) {
    auto text = read_file(path_);
    if (!text) return text.status();
    doc = nlohmann::json::parse(*text, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("holders") || !doc["holders"].is_object()) {
      return error(Errc::protocol, path_.string() + " is corrupt; remove it once no VM is running");
    }
  }
  FCVM_RETURN_IF_ERROR(change(doc));
  return write_file_atomic(path_, doc.dump(1) + "\n", 0600);
}

std::optional<std::uint32_t> AllocationFile::lowest_free_slot(const nlohmann::json& doc, std::uint32_t capacity) {
  std::set<std::uint32_t> used;
  const nlohmann::json holders = doc.value("holders", nlohmann::json::object());
  for (const auto& [holder, entry] : holders.items()) {
    if (entry.is_object() && entry.contains("slot") && entry["slot"].is_number_unsigned()) {
      used.insert(entry["slot"].get<std::uint32_t>());
    }
  }
  for (std::uint32_t s = 0; s < capacity; ++s) {
    if (!used.count(s)) return s;
  }
  return std::nullopt;
}

}  // namespace fcvm
