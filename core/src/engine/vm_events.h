// VmEventWatcher: the lifecycle events of a data dir's VMs (created, started, exited,
// removed), whichever process or front end made them. Every fcvm process writes its VM's
// record to the state store as the VM moves on; the watcher sees those writes (inotify on
// the store's directory) and compares each record with what it saw before. A process that
// dies without writing its exit (SIGKILL) is noticed by polling liveness.
//
// Threading: one thread owns a watcher; it shares nothing with the Engine that opened it,
// so it may live on a thread of its own. Ownership: it holds one inotify fd and reads the
// store on its own. Errors: Status.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "state/vm_record.h"

namespace fcvm {

class StateStore;

struct VmEvent {
  enum class Kind { created, started, exited, removed };
  Kind kind;
  std::string id;
  std::string name;
  VmType type = VmType::vm;
  std::string image;              // or the snapshot, for serves and clones
  std::optional<int> exit_code;   // exited: the container's, when it was recorded
  std::string time;               // RFC3339 UTC, when the watcher saw it
};
// podman's words: "create", "start", "died", "remove".
const char* to_string(VmEvent::Kind kind);
nlohmann::json to_json(const VmEvent& event);

class VmEventWatcher {
 public:
  // Starts watching `store`'s directory (created when missing). VMs that exist now produce
  // no events until they change.
  VmEventWatcher(VmEventWatcher&&) noexcept;
  VmEventWatcher& operator=(VmEventWatcher&&) noexcept;
  ~VmEventWatcher();

  static Result<VmEventWatcher> open(const std::filesystem::path& data_dir);

  // Waits up to `timeout` for changes; returns the events since the last call, oldest
  // first (possibly none).
  Result<std::vector<VmEvent>> next(std::chrono::milliseconds timeout);

 private:
  struct Seen {
    VmRecord record;
    bool alive;
  };
  VmEventWatcher(std::unique_ptr<StateStore> store, UniqueFd inotify);
  // Compares the store with what was seen, and remembers it.
  Result<std::vector<VmEvent>> diff();

  std::unique_ptr<StateStore> store_;
  UniqueFd inotify_;
  std::map<std::string, Seen> seen_;  // by id
};

}  // namespace fcvm
