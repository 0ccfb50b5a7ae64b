// The serve process's control socket (<serve dir>/serve.sock). A clone's launcher announces
// its VMM's pid there as soon as the VMM exists, so the page server admits that VMM's
// handshake (MemoryServer::expect_client): one JSON line each way,
//   {"announce_vmm": PID}  ->  {"ok": true} | {"ok": false, "error": "..."}.
//
// Only a process of the serve's user (or root) may announce, and only a VMM it spawned
// itself (the VMM's parent is the announcer): a local process cannot get a stranger's
// memory served, nor the snapshot's memory into a process of its own choosing.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <memory>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm {

class ServeControlServer {
 public:
  using Announce = std::function<void(pid_t vmm)>;

  // Listens on `socket` (0600). Removes the socket on destruction.
  static Result<std::unique_ptr<ServeControlServer>> listen(const std::filesystem::path& socket,
                                                            Announce announce);
  ~ServeControlServer();
  ServeControlServer(const ServeControlServer&) = delete;
  ServeControlServer& operator=(const ServeControlServer&) = delete;

  // For the owner's poll loop (POLLIN: a client waits).
  int fd() const { return listener_.get(); }
  // Accepts one client and answers its request; blocks up to 2 s for the request line.
  // Client errors end that client only (an error reply where one can still be sent).
  void serve_one();

 private:
  ServeControlServer(std::filesystem::path socket, UniqueFd listener, Announce announce)
      : socket_(std::move(socket)), listener_(std::move(listener)), announce_(std::move(announce)) {}
  std::filesystem::path socket_;
  UniqueFd listener_;
  Announce announce_;
};

// The launcher's side: announces VMM `vmm` (a child of this process) to the serve whose
// control socket is `socket`, and waits for the answer (bounded by 10 s). An error reply
// comes back as an error Status carrying the serve's message.
Status announce_vmm(const std::filesystem::path& socket, pid_t vmm);

}  // namespace fcvm
