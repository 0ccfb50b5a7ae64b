// StateStore: the records of fcvm processes, one JSON file each in <data_dir>/state/<id>.json.
//
// Writers (create, update, remove) hold an exclusive flock on <data_dir>/state/.lock, so a
// check-then-write (name uniqueness, read-modify-write) is atomic across threads and
// processes. Files are replaced with write_file_atomic, so readers (list, get, find_*) take
// no lock and still only ever see whole records. Any number of StateStore objects, in any
// number of processes, may share one directory. Thread-safe.
//
// Names are unique among all records, live or not: a record whose process died keeps its
// name until `fcvm gc` removes it (its leases still need tearing down), like an exited
// container's name in podman.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string_view>
#include <vector>

#include "fcvm/log.h"
#include "fcvm/file_lock.h"
#include "fcvm/result.h"
#include "state/vm_record.h"

namespace fcvm {

class StateStore {
 public:
  // `log` receives the warnings about records that are skipped (see list()).
  explicit StateStore(const std::filesystem::path& data_dir, LoggerPtr log = null_logger());

  // <data_dir>/state
  const std::filesystem::path& dir() const { return dir_; }

  // Stores a new record. Fills in an empty id (random), name ("fcvm-<6 hex>") and created
  // (now). Fails with invalid_argument for a bad name or id, and with already_exists when
  // the name or id is taken (saying by whom and what to do). Returns the stored record.
  Result<VmRecord> create(VmRecord record);

  // Read-modify-write of record `id` under the lock. `change` may edit anything but the id;
  // a new name is validated and checked for uniqueness. If `change` fails, nothing is
  // written and its Status is returned. not_found when there is no such record.
  Result<VmRecord> update(std::string_view id, const std::function<Status(VmRecord&)>& change);

  // Deletes record `id`. not_found when there is none.
  Status remove(std::string_view id);

  // All records, oldest first (by created, then id). A record file that cannot be read or
  // parsed is skipped with a warning naming the file and the fix, so one damaged file
  // does not block every command. Fails only when the directory itself cannot be read.
  Result<std::vector<VmRecord>> list() const;

  // Deletes the temp files (".<id>.json.tmp.<pid>.<n>") that writers killed mid-write
  // left behind; a temp file whose writer still runs is left alone. Takes the writers'
  // lock. Returns how many were removed.
  Result<int> sweep_temp_files();

  // Holds an exclusive lock that serialises whole `fcvm gc` runs, so concurrent collectors
  // never tear down the same record twice. Blocks until granted.
  Result<FileLock> lock_collection();

  Result<VmRecord> get(std::string_view id) const;
  Result<VmRecord> find_by_name(std::string_view name) const;
  // The record of process `pid`; when several records carry that PID (a dead one whose PID
  // was reused), the live one.
  Result<VmRecord> find_by_pid(pid_t pid) const;
  // By exact name, else by exact id. The not_found message names what was looked for.
  Result<VmRecord> find(std::string_view name_or_id) const;

 private:
  std::filesystem::path record_path(std::string_view id) const;
  Result<VmRecord> read_record(const std::filesystem::path& path) const;
  Status write_record(const VmRecord& record) const;
  // Fails if another record (not `self_id`) has `name`. Caller holds the lock.
  Status check_name_free(std::string_view name, std::string_view self_id) const;

  Status ensure_dir() const;

  std::filesystem::path dir_;
  std::filesystem::path lock_path_;
  LoggerPtr log_;
};

}  // namespace fcvm
