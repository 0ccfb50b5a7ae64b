// The snapshot request of a running VM: `fcvm snapshot create` connects to <vm dir>/
// snapshot.sock, sends one SnapshotRequest as a JSON line and reads one JSON line back:
// {"ok":true,"tag":...,"pause_ms":N} or {"ok":false,"error":"..."}.
//
// Interim: a socket of its own, served from the VM's event loop through
// SupervisorOptions::watched, until the typed host control protocol carries a snapshot
// request. Everything from the client is checked; a bad request is an error reply.
#pragma once

#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "snapshot/snapshot_builder.h"

namespace fcvm {

class SnapshotControlServer {
 public:
  using Take = std::function<Result<SnapshotManifest>(const SnapshotRequest&,
                                                      const std::function<bool()>& still_wanted)>;

  // Listens on `socket` (0600). Removes the socket on destruction.
  static Result<std::unique_ptr<SnapshotControlServer>> listen(const std::filesystem::path& socket, Take take);
  ~SnapshotControlServer();

  // For the event loop (EPOLLIN: a client waits).
  int fd() const { return listener_.get(); }
  // Accepts one client and answers its request; blocks up to 10 s for the request line and
  // for the snapshot itself. Never throws; client errors only end that client.
  void serve_one();

 private:
  SnapshotControlServer(std::filesystem::path socket, UniqueFd listener, Take take)
      : socket_(std::move(socket)), listener_(std::move(listener)), take_(std::move(take)) {}
  std::filesystem::path socket_;
  UniqueFd listener_;
  Take take_;
};

// The client side: sends `request`, waits for the reply (the snapshot takes as long as it
// takes). An error reply is returned as an error Status with the server's message.
Result<nlohmann::json> request_snapshot(const std::filesystem::path& socket,
                                        const SnapshotRequest& request);

}  // namespace fcvm
