#include "snapshot/snapshot_control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace fcvm {
namespace {

constexpr size_t kMaxLine = 4096;

Result<sockaddr_un> address_of(const std::filesystem::path& socket) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const auto path = socket.string();
  if (path.size() >= sizeof addr.sun_path) {
    return error(Errc::invalid_argument, "socket path too long: " + path);
  }
  std::copy(path.begin(), path.end(), addr.sun_path);
  return addr;
}

// One line from `fd` (blocking, SO_RCVTIMEO bounds each read), without its newline.
Result<std::string> read_line(int fd) {
  std::string line;
  char c;
  while (line.size() < kMaxLine) {
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("read snapshot request");
    if (n == 0) return error(Errc::io, "the peer closed the connection");
    if (c == '\n') return line;
    line += c;
  }
  return error(Errc::invalid_argument, "line longer than " + std::to_string(kMaxLine) + " bytes");
}

Status write_line(int fd, const std::string& text) {
  const std::string line = text + "\n";
  for (size_t done = 0; done < line.size();) {
    ssize_t n = ::send(fd, line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_status("write");
    done += static_cast<size_t>(n);
  }
  return ok_status();
}

}  // namespace

Result<std::unique_ptr<SnapshotControlServer>> SnapshotControlServer::listen(
    const std::filesystem::path& socket, Take take) {
  auto addr = address_of(socket);
  if (!addr) return addr.status();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  ::unlink(socket.c_str());
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&*addr), sizeof *addr) != 0 ||
      ::listen(fd.get(), 4) != 0) {
    return errno_status("listen on " + socket.string());
  }
  ::chmod(socket.c_str(), 0600);
  return std::unique_ptr<SnapshotControlServer>(
      new SnapshotControlServer(socket, std::move(fd), std::move(take)));
}

SnapshotControlServer::~SnapshotControlServer() { ::unlink(socket_.c_str()); }

void SnapshotControlServer::serve_one() {
  UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!client) return;
  timeval tv{10, 0};
  ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(client.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  nlohmann::json reply;
  auto line = read_line(client.get());
  auto request = line ? parse_snapshot_request(*line) : Result<SnapshotRequest>(line.status());
  if (!request) {
    reply = {{"ok", false}, {"error", request.status().message()}};
  } else {
    const int fd = client.get();
    // A client that hung up (killed while waiting) no longer wants its snapshot.
    auto still_wanted = [fd] {
      pollfd p{fd, POLLRDHUP, 0};
      return ::poll(&p, 1, 0) == 0;
    };
    auto taken = take_(*request, still_wanted);
    if (taken) {
      reply = {{"ok", true}, {"tag", taken->tag}, {"pause_ms", taken->pause_ms}};
    } else {
      reply = {{"ok", false}, {"error", taken.status().message()}};
    }
  }
  (void)write_line(client.get(), reply.dump());
}

Result<nlohmann::json> request_snapshot(const std::filesystem::path& socket,
                                        const SnapshotRequest& request) {
  auto addr = address_of(socket);
  if (!addr) return addr.status();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&*addr), sizeof *addr) != 0) {
    return errno_status("connect to " + socket.string() + " (is the VM running?)");
  }
  FCVM_RETURN_IF_ERROR(write_line(fd.get(), to_json(request).dump()));
  auto line = read_line(fd.get());
  if (!line) return line.status().with_context("snapshot reply: ");
  auto reply = nlohmann::json::parse(*line, nullptr, /*allow_exceptions=*/false);
  if (!reply.is_object() || !reply.value("ok", false)) {
    return error(Errc::io, reply.is_object() && reply.contains("error") && reply["error"].is_string()
                               ? reply["error"].get<std::string>()
                               : "malformed snapshot reply");
  }
  return reply;
}

}  // namespace fcvm
