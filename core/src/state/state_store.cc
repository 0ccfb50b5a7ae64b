#include "state/state_store.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <system_error>

#include "fcvm/atomic_file.h"
#include "fcvm/file_lock.h"

namespace fcvm {
namespace {

Status bad_id(std::string_view id) {
  return error(Errc::invalid_argument,
               "invalid record id '" + std::string(id) + "': expected 12 lowercase hex digits");
}

// The writer's PID in a write_file_atomic temp name ".<id>.json.tmp.<pid>.<n>", or 0 when
// `name` is not such a name.
pid_t temp_file_writer(const std::string& name) {
  static constexpr std::string_view kMarker = ".json.tmp.";
  const auto at = name.find(kMarker);
  if (name.empty() || name[0] != '.' || at == std::string::npos ||
      !is_valid_vm_id(std::string_view(name).substr(1, at - 1))) {
    return 0;
  }
  const char* begin = name.data() + at + kMarker.size();
  const char* end = name.data() + name.size();
  pid_t pid = 0;
  auto [next, ec] = std::from_chars(begin, end, pid);
  if (ec != std::errc() || next == end || *next != '.' || pid <= 0) return 0;
  return pid;
}

std::string permission_fix(const std::filesystem::path& path) {
  return "; it belongs to another user: run fcvm as that user (or root), or pass --data-dir "
         "to use your own (" + path.string() + ")";
}

}  // namespace

StateStore::StateStore(const std::filesystem::path& data_dir, LoggerPtr log)
    : dir_(data_dir / "state"), lock_path_(dir_ / ".lock"), log_(std::move(log)) {}

Status StateStore::ensure_dir() const {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return error(Errc::io, "create state directory " + dir_.string() + ": " + ec.message());
  return ok_status();
}

std::filesystem::path StateStore::record_path(std::string_view id) const {
  return dir_ / (std::string(id) + ".json");
}

Result<VmRecord> StateStore::read_record(const std::filesystem::path& path) const {
  auto text = read_file(path);
  if (!text.ok()) return text.status();
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(*text);
  } catch (const nlohmann::json::parse_error& e) {
    return error(Errc::protocol, "state record " + path.string() + ": not valid JSON at byte " +
                                     std::to_string(e.byte) + " of " +
                                     std::to_string(text->size()) + " (truncated or edited?)");
  }
  auto record = vm_record_from_json(doc);
  if (!record.ok()) return record.status().with_context("state record " + path.string() + ": ");
  if (path.stem() != record->id) {
    return error(Errc::protocol, "state record " + path.string() + ": holds id '" + record->id +
                                     "', not the one in its file name");
  }
  return record;
}

Status StateStore::write_record(const VmRecord& record) const {
  return write_file_atomic(record_path(record.id), to_json(record).dump(2) + "\n");
}

Status StateStore::check_name_free(std::string_view name, std::string_view self_id) const {
  auto records = list();
  if (!records.ok()) return records.status();
  for (const auto& other : *records) {
    if (other.id == name && other.id != self_id) {
      return error(Errc::already_exists,
                   "name '" + std::string(name) + "' is the id of " + to_string(other.type) +
                       " '" + other.name + "', so commands would not know which one you mean; "
                       "pick another name");
    }
    if (other.name != name || other.id == self_id) continue;
    if (other.alive()) {
      return error(Errc::already_exists,
                   "name '" + std::string(name) + "' is in use by " + to_string(other.type) +
                       " " + other.id + " (pid " + std::to_string(other.process.pid) +
                       "); pick another name");
    }
    return error(Errc::already_exists, "name '" + std::string(name) +
                                           "' is used by an exited VM (" + other.id +
                                           "); remove it with 'fcvm rm " + std::string(name) +
                                           "' or pick another");
  }
  return ok_status();
}

Result<VmRecord> StateStore::create(VmRecord record) {
  FCVM_RETURN_IF_ERROR(ensure_dir());
  auto lock = FileLock::acquire(lock_path_, FileLock::Mode::exclusive);
  if (!lock.ok()) return lock.status();

  if (record.id.empty()) {
    auto records = list();
    if (!records.ok()) return records.status();
    const auto is_a_name = [&](const std::string& id) {
      return std::any_of(records->begin(), records->end(),
                         [&](const VmRecord& r) { return r.name == id; });
    };
    do {
      record.id = random_vm_id();
    } while (std::filesystem::exists(record_path(record.id)) || is_a_name(record.id));
  } else if (!is_valid_vm_id(record.id)) {
    return bad_id(record.id);
  } else if (std::filesystem::exists(record_path(record.id))) {
    return error(Errc::already_exists, "a state record with id " + record.id + " exists");
  }

  if (record.name.empty()) {
    auto records = list();
    if (!records.ok()) return records.status();
    const auto taken = [&](const std::string& name) {
      return std::any_of(records->begin(), records->end(),
                         [&](const VmRecord& r) { return r.name == name; });
    };
    do {
      record.name = random_vm_name();
    } while (taken(record.name));
  } else {
    FCVM_RETURN_IF_ERROR(validate_vm_name(record.name));
    FCVM_RETURN_IF_ERROR(check_name_free(record.name, record.id));
  }
  if (record.created.empty()) record.created = now_rfc3339();
  if (!record.extra.is_object()) record.extra = nlohmann::json::object();

  FCVM_RETURN_IF_ERROR(write_record(record));
  return record;
}

Result<VmRecord> StateStore::update(std::string_view id,
                                    const std::function<Status(VmRecord&)>& change) {
  if (!is_valid_vm_id(id)) return bad_id(id);
  auto lock = FileLock::acquire(lock_path_, FileLock::Mode::exclusive);
  if (!lock.ok()) return lock.status();
  auto record = read_record(record_path(id));
  if (!record.ok()) return record.status();
  const std::string old_name = record->name;
  FCVM_RETURN_IF_ERROR(change(*record));
  if (record->id != id) {
    return error(Errc::internal, "state record " + std::string(id) + ": an update changed its id");
  }
  if (record->name != old_name) {
    FCVM_RETURN_IF_ERROR(validate_vm_name(record->name));
    FCVM_RETURN_IF_ERROR(check_name_free(record->name, record->id));
  }
  if (!record->extra.is_object()) record->extra = nlohmann::json::object();
  FCVM_RETURN_IF_ERROR(write_record(*record));
  return record;
}

Status StateStore::remove(std::string_view id) {
  if (!is_valid_vm_id(id)) return bad_id(id);
  auto lock = FileLock::acquire(lock_path_, FileLock::Mode::exclusive);
  if (!lock.ok()) return lock.status();
  const auto path = record_path(id);
  std::error_code ec;
  if (!std::filesystem::remove(path, ec)) {
    if (ec) return error(Errc::io, "remove " + path.string() + ": " + ec.message());
    return error(Errc::not_found, "no state record with id " + std::string(id));
  }
  return fsync_dir(dir_);
}

Result<std::vector<VmRecord>> StateStore::list() const {
  std::vector<VmRecord> out;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir_, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return out;
    std::string why = "read state directory " + dir_.string() + ": " + ec.message();
    if (ec == std::errc::permission_denied) why += permission_fix(dir_);
    return error(Errc::io, why);
  }
  for (const auto& entry : it) {
    const auto& path = entry.path();
    // Temp files of in-flight writes start with '.', as does the lock file.
    if (path.extension() != ".json" || !is_valid_vm_id(path.stem().string())) continue;
    auto record = read_record(path);
    if (!record.ok()) {
      if (record.status().code() == Errc::not_found) continue;  // removed since readdir
      log_->warn("skipping " + record.status().message() + "; if no VM uses it, move it out of " +
                 dir_.string() + " (its VM's files stay until you remove them)");
      continue;
    }
    out.push_back(std::move(record).value());
  }
  std::sort(out.begin(), out.end(), [](const VmRecord& a, const VmRecord& b) {
    return a.created != b.created ? a.created < b.created : a.id < b.id;
  });
  return out;
}

Result<int> StateStore::sweep_temp_files() {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir_, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return 0;
    return error(Errc::io, "read state directory " + dir_.string() + ": " + ec.message());
  }
  auto lock = FileLock::acquire(lock_path_, FileLock::Mode::exclusive);
  if (!lock.ok()) return lock.status();
  int removed = 0;
  for (const auto& entry : it) {
    const pid_t writer = temp_file_writer(entry.path().filename().string());
    // A writer that still runs (or a reused PID) keeps its file; the next gc sees it again.
    if (writer == 0 || ::kill(writer, 0) == 0 || errno != ESRCH) continue;
    if (std::filesystem::remove(entry.path(), ec)) ++removed;
  }
  return removed;
}

Result<FileLock> StateStore::lock_collection() {
  FCVM_RETURN_IF_ERROR(ensure_dir());
  return FileLock::acquire(dir_ / ".gc.lock", FileLock::Mode::exclusive);
}

Result<VmRecord> StateStore::get(std::string_view id) const {
  if (!is_valid_vm_id(id)) return bad_id(id);
  auto record = read_record(record_path(id));
  if (!record.ok() && record.status().code() == Errc::not_found) {
    return error(Errc::not_found, "no VM with id " + std::string(id));
  }
  return record;
}

Result<VmRecord> StateStore::find_by_name(std::string_view name) const {
  auto records = list();
  if (!records.ok()) return records.status();
  for (auto& r : *records) {
    if (r.name == name) return std::move(r);
  }
  return error(Errc::not_found, "no VM named '" + std::string(name) + "'");
}

Result<VmRecord> StateStore::find_by_pid(pid_t pid) const {
  auto records = list();
  if (!records.ok()) return records.status();
  std::optional<VmRecord> dead;
  for (auto& r : *records) {
    if (r.process.pid != pid) continue;
    if (r.alive()) return std::move(r);
    if (!dead) dead = std::move(r);
  }
  if (dead) return std::move(*dead);
  return error(Errc::not_found, "no VM with pid " + std::to_string(pid));
}

Result<VmRecord> StateStore::find(std::string_view name_or_id) const {
  auto by_name = find_by_name(name_or_id);
  if (by_name.ok() || by_name.status().code() != Errc::not_found) return by_name;
  if (is_valid_vm_id(name_or_id)) {
    auto by_id = get(name_or_id);
    if (by_id.ok() || by_id.status().code() != Errc::not_found) return by_id;
  }
  return error(Errc::not_found,
               "no VM named or with id '" + std::string(name_or_id) + "'");
}

}  // namespace fcvm
