// ControlServer: the VM's control socket (control/control_protocol.h), served from the
// supervisor's loop: `fcvm exec`, `stop`, `pause`, `unpause`, `snapshot create` and
// `healthcheck run` as requests, each on its own connection; for exec, the command's I/O.
//
// A malformed request or message gets an error reply and the connection closes; the VM
// runs on (only a stop request stops it). An exec session in the guest has the id of its
// connection (ids from one counter, shared with the health monitor's exec sessions).
//
// Flow control (agent_protocol.h, "Flow control"): an exec session's output is credited to
// the agent once written to its client's socket, so a slow client slows only its own
// command; output past kMaxQueuedOutput (a guest that ignores its window) ends the
// session. A client's STDIN is held to the agent's STDIN window: while some waits, the
// client is not read.
//
// Threading: the loop's thread. Nothing throws.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <fcvm/agent_plan.h>

#include "agent/agent_channel.h"
#include "control/control_protocol.h"
#include "fcvm/log.h"
#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "supervise/container_lifecycle.h"
#include "supervise/epoll_set.h"

namespace fcvm {

class HealthMonitor;

class ControlServer {
 public:
  // SupervisorOptions::take_snapshot.
  using TakeSnapshot = std::function<Result<control::SnapshotTaken>(
      const control::SnapshotRequest& request, bool paused, const std::function<bool()>& still_wanted)>;
  struct Options {
    std::filesystem::path socket;  // created 0600, replacing a stale one; removed at the end
    agent::Process main_process;   // defaults for exec sessions (env, cwd, user)
    std::filesystem::path rootfs;  // the image rootfs, for exec --user names
    TakeSnapshot take_snapshot;    // null: snapshot requests are refused
    HealthMonitor* health = nullptr;  // borrowed; null: healthcheck requests are refused
  };
  // The epoll tags the server's descriptors are watched under: the listener's, and each
  // client's as client_base + its session id.
  struct Tags {
    std::uint64_t listener = 0;
    std::uint64_t client_base = 0;
  };

  // Listens on options.socket and watches it in `epoll`. `agent`, `lifecycle` and `epoll`
  // must outlive the server. Errors: the socket cannot be made.
  static Result<std::unique_ptr<ControlServer>> listen(Options options, AgentChannel& agent,
                                                       ContainerLifecycle& lifecycle, EpollSet& epoll,
                                                       Tags tags, LoggerPtr log);
  // Drops the clients and removes the socket.
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // A new guest session id (an exec session that is not a client's).
  std::uint32_t new_session() { return next_session_++; }
  // Ids up to `session` are taken (a restored guest's sessions).
  void reserve_up_to(std::uint32_t session) { next_session_ = std::max(next_session_, session + 1); }

  // The listener is readable: accepts every waiting connection.
  void on_listener();
  // `events` (what epoll reported) on the client of `session`.
  void on_client(std::uint32_t session, std::uint32_t events);
  // A frame of an exec session (not the main one's); frames for no client are dropped.
  void on_exec_frame(const agent::Frame& frame);
  // STDIN_CREDIT for an exec session.
  void on_stdin_credit(std::uint32_t session, std::uint64_t bytes);
  // Closes every connection (the VM is gone).
  void drop_all();

 private:
  struct Client;
  ControlServer(Options options, AgentChannel& agent, ContainerLifecycle& lifecycle, EpollSet& epoll,
                Tags tags, UniqueFd listener, LoggerPtr log);
  void handle_request(std::uint32_t session, Client& client, const std::string& payload);
  void handle_exec(std::uint32_t session, Client& client, const control::ExecRequest& exec);
  // pause, resume and snapshot requests; each finishes its client.
  void handle_vm_request(Client& client, const control::Request& request);
  // `fcvm healthcheck run`: replies once the health monitor's probe has ended.
  void run_health_check(std::uint32_t session, Client& client);
  // Moves a client's held STDIN to the agent as far as its window allows.
  void forward_stdin(std::uint32_t session, Client& client);
  // Writes what the client is owed; drops it once finished and flushed.
  void flush(std::uint32_t session);
  void drop(std::uint32_t session);

  Options options_;
  AgentChannel& agent_;
  ContainerLifecycle& lifecycle_;
  EpollSet& epoll_;
  Tags tags_;
  UniqueFd listener_;
  LoggerPtr log_;
  std::map<std::uint32_t, std::unique_ptr<Client>> clients_;
  std::uint32_t next_session_ = 1;
};

}  // namespace fcvm
