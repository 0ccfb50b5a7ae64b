#include "engine/vm_events.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "state/state_store.h"

namespace fcvm {
namespace {

bool ended(const VmRecord& r, bool alive) {
  return !alive || r.status == VmStatus::exited || r.status == VmStatus::failed;
}

}  // namespace

const char* to_string(VmEvent::Kind kind) {
  switch (kind) {
    case VmEvent::Kind::created: return "create";
    case VmEvent::Kind::started: return "start";
    case VmEvent::Kind::exited: return "died";
    case VmEvent::Kind::removed: return "remove";
  }
  return "unknown";
}

nlohmann::json to_json(const VmEvent& e) {
  nlohmann::json j = {{"status", to_string(e.kind)}, {"id", e.id},      {"name", e.name},
                      {"type", to_string(e.type)},   {"image", e.image}, {"time", e.time}};
  if (e.exit_code) j["exit_code"] = *e.exit_code;
  return j;
}

VmEventWatcher::VmEventWatcher(std::unique_ptr<StateStore> store, UniqueFd inotify)
    : store_(std::move(store)), inotify_(std::move(inotify)) {}
VmEventWatcher::VmEventWatcher(VmEventWatcher&&) noexcept = default;
VmEventWatcher& VmEventWatcher::operator=(VmEventWatcher&&) noexcept = default;
VmEventWatcher::~VmEventWatcher() = default;

Result<VmEventWatcher> VmEventWatcher::open(const std::filesystem::path& data_dir) {
  auto owned = std::make_unique<StateStore>(data_dir);
  const StateStore& store = *owned;
  std::error_code ec;
  std::filesystem::create_directories(store.dir(), ec);
  UniqueFd fd(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!fd) return error(Errc::io, std::string("inotify_init1: ") + std::strerror(errno));
  // Records are written by rename (temp + fsync + rename) and deleted by unlink.
  if (::inotify_add_watch(fd.get(), store.dir().c_str(), IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM) < 0) {
    return error(Errc::io, "watching " + store.dir().string() + ": " + std::strerror(errno));
  }
  VmEventWatcher watcher(std::move(owned), std::move(fd));
  auto first = watcher.diff();  // what exists now is the baseline, not news
  if (!first.ok()) return first.status();
  return watcher;
}

Result<std::vector<VmEvent>> VmEventWatcher::next(std::chrono::milliseconds timeout) {
  pollfd p{inotify_.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) < 0 && errno != EINTR) {
    return error(Errc::io, std::string("poll: ") + std::strerror(errno));
  }
  char buf[4096];
  while (::read(inotify_.get(), buf, sizeof buf) > 0) {
  }
  // Deaths without a record write show here too: every call compares liveness.
  return diff();
}

Result<std::vector<VmEvent>> VmEventWatcher::diff() {
  auto records = store_->list();
  if (!records.ok()) return records.status();
  std::vector<VmEvent> out;
  const std::string now = now_rfc3339();
  auto event = [&](VmEvent::Kind kind, const VmRecord& r) {
    VmEvent e{kind, r.id, r.name, r.type, r.image.empty() ? r.snapshot : r.image, std::nullopt, now};
    if (kind == VmEvent::Kind::exited) e.exit_code = r.exit_code;
    out.push_back(std::move(e));
  };
  std::map<std::string, Seen> current;
  for (auto& r : *records) {
    const bool alive = r.alive();
    auto before = seen_.find(r.id);
    if (before == seen_.end()) {
      event(VmEvent::Kind::created, r);
      if (r.status == VmStatus::running || r.status == VmStatus::exited) event(VmEvent::Kind::started, r);
      if (ended(r, alive)) event(VmEvent::Kind::exited, r);
    } else {
      const Seen& was = before->second;
      if (was.record.status == VmStatus::creating && (r.status == VmStatus::running || r.status == VmStatus::exited)) {
        event(VmEvent::Kind::started, r);
      }
      if (!ended(was.record, was.alive) && ended(r, alive)) event(VmEvent::Kind::exited, r);
    }
    std::string id = r.id;
    current.emplace(std::move(id), Seen{std::move(r), alive});
  }
  for (const auto& [id, was] : seen_) {
    if (!current.count(id)) event(VmEvent::Kind::removed, was.record);
  }
  seen_ = std::move(current);
  return out;
}

}  // namespace fcvm
