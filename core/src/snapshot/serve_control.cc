#include "snapshot/serve_control.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "snapshot/line_socket.h"
#include "state/process_identity.h"

namespace fcvm {
namespace {

// The parent pid of `pid` from /proc, 0 when unknown.
pid_t parent_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  char state = 0;
  pid_t ppid = 0;
  if (std::sscanf(stat.c_str() + paren + 1, " %c %d", &state, &ppid) != 2) return 0;
  return ppid;
}

Status check_announcement(const ucred& peer, const nlohmann::json& request, pid_t* vmm) {
  if (peer.uid != 0 && peer.uid != ::geteuid()) {
    return error(Errc::unavailable, "uid " + std::to_string(peer.uid) +
                                              " may not announce VMMs to this serve; run the clone as its user");
  }
  if (!request.is_object() || !request.contains("announce_vmm") || !request["announce_vmm"].is_number_integer()) {
    return error(Errc::invalid_argument, "expected {\"announce_vmm\": PID}");
  }
  const auto pid = request["announce_vmm"].get<long long>();
  if (pid <= 0 || pid > (1ll << 22)) return error(Errc::invalid_argument, "pid " + std::to_string(pid) + " is out of range");
  if (parent_of(pid_t(pid)) != peer.pid) {
    return error(Errc::unavailable, "process " + std::to_string(pid) +
                                              " is not a child of the announcing process " + std::to_string(peer.pid));
  }
  *vmm = pid_t(pid);
  return ok_status();
}

}  // namespace

Result<std::unique_ptr<ServeControlServer>> ServeControlServer::listen(const std::filesystem::path& socket,
                                                                       Announce announce) {
  auto fd = listen_line_socket(socket);
  if (!fd) return fd.status();
  return std::unique_ptr<ServeControlServer>(new ServeControlServer(socket, std::move(*fd), std::move(announce)));
}

ServeControlServer::~ServeControlServer() { ::unlink(socket_.c_str()); }

void ServeControlServer::serve_one() {
  UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!client) return;
  timeval tv{2, 0};
  ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(client.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(client.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) return;
  auto line = read_socket_line(client.get());
  if (!line) return;
  pid_t vmm = 0;
  Status st = check_announcement(peer, nlohmann::json::parse(*line, nullptr, false), &vmm);
  if (st.ok()) announce_(vmm);
  const nlohmann::json reply = st.ok() ? nlohmann::json{{"ok", true}}
                                       : nlohmann::json{{"ok", false}, {"error", st.message()}};
  (void)write_socket_line(client.get(), reply.dump());
}

Status announce_vmm(const std::filesystem::path& socket, pid_t vmm) {
  auto fd = connect_line_socket(socket, "is the serve process running?");
  if (!fd) return fd.status();
  timeval tv{10, 0};
  ::setsockopt(fd->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  FCVM_RETURN_IF_ERROR(write_socket_line(fd->get(), nlohmann::json{{"announce_vmm", vmm}}.dump()));
  auto line = read_socket_line(fd->get());
  if (!line) return line.status().with_context("serve's answer: ");
  auto reply = nlohmann::json::parse(*line, nullptr, false);
  if (reply.is_object() && reply.value("ok", false)) return ok_status();
  return error(Errc::io, reply.is_object() && reply.contains("error") && reply["error"].is_string()
                             ? "the serve refused VMM " + std::to_string(vmm) + ": " + reply["error"].get<std::string>()
                             : "malformed answer from the serve");
}

}  // namespace fcvm
