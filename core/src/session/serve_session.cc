#include "session/serve_session.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>

#include <set>
#include <thread>

#include "fcvm/path_beneath.h"
#include "snapshot/memory_stats_file.h"
#include "snapshot/serve_control.h"
#include "state/state_store.h"

namespace fcvm {
namespace {

constexpr auto kStatsInterval = std::chrono::milliseconds(1000);
constexpr auto kCloneStopWait = std::chrono::seconds(60);

// The record of a dead serve taken over by this process, and the process it named.
struct TakenOverServe {
  VmRecord record;
  ProcessIdentity previous;
};

// Under the collection lock (so `fcvm gc` does not remove the directory meanwhile): the
// first record of a dead serve of `tag` that used memory plugin `memory` and still has its
// directory is rewritten to name this process (as `name` when given). nullopt when none.
Result<std::optional<TakenOverServe>> take_over_dead_serve(const SessionServices& services, const std::string& tag,
                                                           const std::string& memory,
                                                           const std::optional<std::string>& name) {
  auto collecting = services.state.lock_collection();
  if (!collecting) return collecting.status();
  auto records = services.state.list();
  if (!records) return records.status();
  for (const auto& r : *records) {
    if (r.type != VmType::serve || r.snapshot != tag || r.alive()) continue;
    auto plugin = r.plugins.find(PluginKind::memory);
    std::error_code ec;
    // The record is data: its directory is taken over (chmod, sockets, removal at exit)
    // only when it is this record's own vms/<id>, a real directory.
    if (plugin == r.plugins.end() || plugin->second != memory ||
        r.vm_dir.lexically_normal() != (services.data_dir / "vms" / r.id).lexically_normal() ||
        !std::filesystem::is_directory(std::filesystem::symlink_status(r.vm_dir, ec))) {
      continue;
    }
    auto updated = services.state.update(r.id, [&](VmRecord& rec) {
      rec.process = ProcessIdentity::self();
      rec.status = VmStatus::creating;
      if (name) rec.name = *name;
      return ok_status();
    });
    if (!updated) {
      services.log->warn("cannot take over the record of dead serve " + std::to_string(r.process.pid) + ": " +
                         updated.status().message());
      continue;
    }
    services.log->info("taking over from serve process " + std::to_string(r.process.pid) + ", which is gone");
    return std::optional<TakenOverServe>(TakenOverServe{*updated, r.process});
  }
  return std::optional<TakenOverServe>();
}

// Adopts every VMM recorded in the server's state dir and points the records of the clones
// whose VMM was adopted at this process. Clones not adopted keep naming the dead serve, so
// `fcvm gc` stops them. Returns how many clones were adopted; failures are logged.
int adopt_clones(const SessionServices& services, MemoryServer& server, const ProcessIdentity& previous) {
  std::set<pid_t> adopted;
  for (pid_t pid : server.recorded_clients()) {
    if (Status st = server.adopt(pid); st.ok()) {
      adopted.insert(pid);
    } else {
      services.log->warn("not adopting VMM " + std::to_string(pid) + ": " + st.message());
    }
  }
  const ProcessIdentity self = ProcessIdentity::self();
  int clones = 0;
  auto records = services.state.list();
  if (!records) {
    services.log->warn("cannot list the clones to adopt: " + records.status().message());
    return 0;
  }
  for (const auto& r : *records) {
    if (r.type != VmType::clone || !r.serve || *r.serve != previous || !r.vmm || !adopted.count(r.vmm->pid)) {
      continue;
    }
    auto updated = services.state.update(r.id, [&](VmRecord& rec) {
      rec.serve = self;
      return ok_status();
    });
    if (updated) {
      ++clones;
      services.log->info("adopted clone " + r.name + " (VMM " + std::to_string(r.vmm->pid) + ")");
    } else {
      services.log->warn("adopted clone " + r.name + " but cannot update its record: " + updated.status().message());
    }
  }
  return clones;
}

// Rewrites the serve's counters file when they changed since `published`.
void publish_memory_stats(const LoggerPtr& log, const std::filesystem::path& dir, const MemoryServer& server,
                          std::string& published) {
  nlohmann::json now = nlohmann::json::array();
  const auto stats = server.stats();
  for (const auto& c : stats) now.push_back(c.to_json());
  std::string text = now.dump();
  if (text == published) return;
  if (Status st = MemoryStatsFile::write(dir, stats); !st.ok()) {
    log->warn("memory counters not published: " + st.message());
    return;
  }
  published = std::move(text);
}

// The serve's record and directory; on every way out its clones are stopped first.
class ServeRecord {
 public:
  ServeRecord(const SessionServices& services, VmRecord record, std::filesystem::path dir)
      : services_(services), record_(std::move(record)), dir_(std::move(dir)) {}
  ~ServeRecord() {
    if (auto records = services_.state.list()) {
      for (const auto& clone : *records) {
        if (clone.type == VmType::clone && clone.alive() && clone.serve && *clone.serve == record_.process) {
          stop_process(clone.process, kCloneStopWait);
        }
      }
    }
    if (Status st = remove_all_beneath(services_.data_dir, dir_); !st.ok()) {
      services_.log->warn("serve: cannot remove its directory: " + st.message());
    }
    (void)services_.state.remove(record_.id);
  }
  ServeRecord(const ServeRecord&) = delete;
  ServeRecord& operator=(const ServeRecord&) = delete;

 private:
  const SessionServices& services_;
  VmRecord record_;
  std::filesystem::path dir_;
};

}  // namespace

bool stop_process(const ProcessIdentity& process, std::chrono::milliseconds wait) {
  if (!process.alive()) return true;
  ::kill(process.pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (process.alive() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return !process.alive();
}

Status serve_snapshot(const SessionServices& services, const ServeSpec& spec,
                 const std::function<void(const std::filesystem::path& socket)>& on_serving) {
  const SnapshotManifest& m = spec.snapshot.manifest;
  // A restarted page server takes over the dead one's directory, whose client records say
  // which VMMs it served.
  std::optional<TakenOverServe> taken;
  if (spec.memory->capabilities().adopts_clients) {
    auto found = take_over_dead_serve(services, m.tag, spec.memory_plugin, spec.name);
    if (!found) return found.status();
    taken = std::move(*found);
  }
  VmRecord created;
  if (taken) {
    created = taken->record;
  } else {
    VmRecord record;
    record.type = VmType::serve;
    if (spec.name) record.name = *spec.name;
    record.process = ProcessIdentity::self();
    record.snapshot = m.tag;
    record.plugins[PluginKind::memory] = spec.memory_plugin;
    record.status = VmStatus::creating;
    auto made = services.state.create(record);
    if (!made) return made.status();
    created = *made;
  }
  const auto dir = taken ? taken->record.vm_dir : services.data_dir / "vms" / created.id;
  ServeRecord guard(services, created, dir);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return error(Errc::io, "create " + dir.string() + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
  const auto socket = dir / "memory.sock";
  MemoryServeOptions serve_options;
  serve_options.memory_image = spec.snapshot.dir / m.memory_file;
  serve_options.socket = socket;
  serve_options.state_dir = dir;
  serve_options.snapshot_dir = spec.snapshot.dir;
  serve_options.prefetch = spec.prefetch;
  // Null with the file backend: the VMMs map the image themselves.
  auto server = spec.memory->serve(serve_options);
  if (!server) return server.status();
  std::unique_ptr<ServeControlServer> control;
  if (*server) {
    auto listening =
        ServeControlServer::listen(dir / "serve.sock", [&](pid_t vmm) { (*server)->expect_client(vmm); });
    if (!listening) return listening.status();
    control = std::move(*listening);
  }
  FCVM_RETURN_IF_ERROR(services.state
                           .update(created.id,
                                   [&](VmRecord& r) {
                                     r.vm_dir = dir;
                                     r.status = VmStatus::running;
                                     if (*server) {
                                       r.extra["memory_socket"] = socket.string();
                                       r.extra["control_socket"] = (dir / "serve.sock").string();
                                     }
                                     return ok_status();
                                   })
                           .status());
  if (*server && taken) {
    const int adopted = adopt_clones(services, **server, taken->previous);
    services.log->info("adopted " + std::to_string(adopted) + " clone(s) of serve process " +
                       std::to_string(taken->previous.pid));
  }
  on_serving(*server ? socket : std::filesystem::path());

  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, s);
  UniqueFd signals(::signalfd(-1, &set, SFD_CLOEXEC));
  if (!signals) return errno_status("signalfd");
  MemoryServer* pages = server->get();
  std::string published;
  auto next_publish = std::chrono::steady_clock::now();
  for (;;) {
    pollfd fds[3] = {{signals.get(), POLLIN, 0}, {pages ? pages->fd() : -1, POLLIN, 0},
                     {control ? control->fd() : -1, POLLIN, 0}};
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_publish - std::chrono::steady_clock::now());
    if (::poll(fds, 3, pages ? int(std::max<std::int64_t>(0, wait.count())) : -1) < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) break;
    if (fds[2].revents & POLLIN) control->serve_one();
    if (!pages) continue;
    // Also on the publishing tick: a working-set recording window may have closed.
    if (Status st = pages->dispatch(); !st.ok()) services.log->warn("memory server: " + st.message());
    if (std::chrono::steady_clock::now() >= next_publish) {
      publish_memory_stats(services.log, dir, *pages, published);
      next_publish = std::chrono::steady_clock::now() + kStatsInterval;
    }
  }
  services.log->info("stopping the clones of this serve");
  return ok_status();
}

}  // namespace fcvm
