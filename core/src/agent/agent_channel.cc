#include "agent/agent_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>

#include "fcvm/vmm.h"

static_assert(fcvm::kAgentVsockPort == fcvm::agent::kVsockPort, "the SDK and the agent disagree on the vsock port");

namespace fcvm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kReadChunk = 64u << 10;
// At most this much is read per on_readable() call, so a guest that writes faster than
// the host consumes cannot keep one call (and its memory) growing.
constexpr std::size_t kMaxReadPerCall = 4 * kReadChunk;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 60000));
}

}  // namespace

Result<AgentChannel> AgentChannel::adopt(UniqueFd fd) {
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return errno_status("make the agent socket non-blocking");
  }
  return AgentChannel(std::move(fd));
}

std::uint32_t AgentChannel::epoll_events() const {
  return EPOLLIN | (wants_write() ? EPOLLOUT : 0u);
}

void AgentChannel::keep(std::vector<agent::Frame>& frames) {
  for (auto& f : frames) {
    if (f.type == agent::FrameType::kHello) {
      if (hello_seen_) continue;
      hello_seen_ = true;
    }
    backlog_.push_back(std::move(f));
  }
  frames.clear();
}

Result<std::vector<agent::Frame>> AgentChannel::on_readable() {
  if (decoder_.failed()) return error(Errc::protocol, "fc-agent: " + decoder_.error());
  std::vector<agent::Frame> decoded;
  char buf[kReadChunk];
  for (std::size_t total = 0; !closed_ && total < kMaxReadPerCall;) {
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno != ECONNRESET) return errno_status("read from the agent socket");
    if (n <= 0) {
      closed_ = true;
      break;
    }
    total += static_cast<std::size_t>(n);
    const bool ok = decoder_.feed(std::string_view(buf, static_cast<std::size_t>(n)), decoded);
    keep(decoded);
    if (!ok) return error(Errc::protocol, "fc-agent sent a malformed frame: " + decoder_.error());
  }
  std::vector<agent::Frame> out(std::make_move_iterator(backlog_.begin()),
                                std::make_move_iterator(backlog_.end()));
  backlog_.clear();
  return out;
}

Status AgentChannel::on_writable() {
  while (pending() > 0) {
    const ssize_t n = ::send(fd_.get(), out_.data() + out_offset_, pending(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) return errno_status("write to the agent socket");
    out_offset_ += static_cast<std::size_t>(n);
  }
  if (pending() == 0) {
    out_.clear();
    out_offset_ = 0;
  } else if (out_offset_ > out_.size() / 2) {
    out_.erase(0, out_offset_);
    out_offset_ = 0;
  }
  return ok_status();
}

Status AgentChannel::send(agent::FrameType type, std::uint32_t session, std::string_view payload) {
  if (closed_) return error(Errc::io, "fc-agent closed the channel");
  if (payload.size() > agent::kMaxPayloadSize && type != agent::FrameType::kStdin) {
    return error(Errc::invalid_argument,
                 std::string(agent::frame_type_name(type)) + " payload of " +
                     std::to_string(payload.size()) + " bytes exceeds the 1 MiB frame limit");
  }
  do {
    const auto chunk = payload.substr(0, agent::kMaxPayloadSize);
    agent::append_frame(out_, type, session, chunk);
    payload.remove_prefix(chunk.size());
  } while (!payload.empty());
  return on_writable();
}

namespace {
// JSON cannot carry bytes that are not UTF-8; say so instead of mangling an argument.
Result<std::string> dump_strict(const nlohmann::json& j, const char* what) {
  try {
    return j.dump();
  } catch (const nlohmann::json::exception&) {
    return error(Errc::invalid_argument,
                 std::string(what) + ": arguments, environment and paths must be valid UTF-8");
  }
}
}  // namespace

Status AgentChannel::send_plan(const agent::Plan& plan) {
  auto payload = dump_strict(agent::to_json(plan), "plan");
  if (!payload) return payload.status();
  return send(agent::FrameType::kPlan, agent::kMainSession, *payload);
}

Status AgentChannel::send_exec(std::uint32_t session, const agent::Process& process) {
  if (session == agent::kMainSession) {
    return error(Errc::invalid_argument, "EXEC needs a session id greater than 0");
  }
  auto payload = dump_strict(agent::to_json(process), "exec");
  if (!payload) return payload.status();
  return send(agent::FrameType::kExec, session, *payload);
}

Status AgentChannel::send_stdin(std::uint32_t session, std::string_view bytes) {
  if (bytes.empty()) return ok_status();  // an empty STDIN frame would mean nothing
  return send(agent::FrameType::kStdin, session, bytes);
}

Status AgentChannel::send_stdin_eof(std::uint32_t session) {
  return send(agent::FrameType::kStdinEof, session, {});
}

Status AgentChannel::send_signal(std::uint32_t session, int signal) {
  return send(agent::FrameType::kSignal, session, agent::SignalRequest{signal}.to_payload());
}

Status AgentChannel::send_shutdown(std::chrono::milliseconds timeout, int signal) {
  agent::ShutdownRequest req;
  req.signal = signal;
  req.timeout_ms = static_cast<std::uint32_t>(std::max<long long>(0, timeout.count()));
  return send(agent::FrameType::kShutdown, agent::kMainSession, req.to_payload());
}

Status AgentChannel::send_attach(std::uint64_t generation) {
  unsigned char bytes[agent::kMinAttachEntropy];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("getrandom for the guest's entropy");
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  agent::AttachRequest req;
  req.generation = generation;
  for (unsigned char b : bytes) {
    req.entropy_hex += kDigits[b >> 4];
    req.entropy_hex += kDigits[b & 0xf];
  }
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  req.wall_time_ns = static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
  return send(agent::FrameType::kAttach, agent::kMainSession, req.to_payload());
}

Status AgentChannel::check_boot_id(const agent::Attached& attached, const std::string& expected) {
  if (attached.boot_id == expected) return ok_status();
  return error(Errc::protocol,
               "the guest reports boot id " + attached.boot_id + ", not the snapshot's " + expected +
                   ": it booted afresh instead of resuming the snapshot (its memory did not come "
                   "from the snapshot's memory file); check the memory backend and the snapshot files");
}

Result<agent::Attached> AgentChannel::attach(std::uint64_t generation,
                                             const std::optional<std::string>& expected_boot_id,
                                             std::chrono::milliseconds timeout) {
  FCVM_RETURN_IF_ERROR(send_attach(generation));
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    FCVM_RETURN_IF_ERROR(on_writable());
    for (auto it = backlog_.begin(); it != backlog_.end();) {
      if (it->type != agent::FrameType::kAttached) {
        ++it;
        continue;
      }
      std::string why;
      auto attached = agent::parse_attached(it->payload, &why);
      if (!attached) return error(Errc::protocol, "fc-agent sent a malformed ATTACHED: " + why);
      it = backlog_.erase(it);
      if (attached->generation != generation) continue;  // a stale answer to an earlier attach
      if (expected_boot_id) FCVM_RETURN_IF_ERROR(check_boot_id(*attached, *expected_boot_id));
      return *attached;
    }
    if (closed_) return error(Errc::io, "fc-agent closed the channel before answering ATTACH");
    if (Clock::now() >= deadline) {
      return error(Errc::timeout, "no ATTACHED from fc-agent within " +
                                      std::to_string(timeout.count()) +
                                      " ms (an agent older than protocol 2 ignores ATTACH)");
    }
    auto ready = wait_for(POLLIN, deadline);
    if (!ready) return ready.status();
    if (!*ready) continue;
    auto frames = on_readable();
    if (!frames) return frames.status();
    for (auto& f : *frames) backlog_.push_back(std::move(f));
  }
}

Result<bool> AgentChannel::wait_for(short events, Clock::time_point deadline) const {
  for (;;) {
    pollfd p{fd_.get(), events, 0};
    const int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("poll the agent socket");
    return n > 0;
  }
}

Result<agent::Hello> AgentChannel::wait_hello(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    // Look for the HELLO among frames already decoded, keeping the rest in order.
    for (auto it = backlog_.begin(); it != backlog_.end(); ++it) {
      if (it->type != agent::FrameType::kHello) continue;
      std::string why;
      auto hello = agent::parse_hello(it->payload, &why);
      backlog_.erase(it);
      if (!hello) return error(Errc::protocol, "fc-agent sent a malformed HELLO: " + why);
      if (hello->protocol != agent::kProtocolVersion) {
        return error(Errc::protocol,
                     "the guest agent speaks protocol " + std::to_string(hello->protocol) +
                         " but fcvm speaks " + std::to_string(agent::kProtocolVersion) +
                         "; rebuild the initramfs with 'fcvm setup initramfs'");
      }
      return *hello;
    }
    if (closed_) {
      return error(Errc::io, "fc-agent channel closed before HELLO: the guest did not boot "
                             "or lacks fc-agent");
    }
    if (Clock::now() >= deadline) {
      return error(Errc::timeout, "no HELLO from fc-agent within " +
                                      std::to_string(timeout.count()) + " ms");
    }
    auto ready = wait_for(POLLIN, deadline);
    if (!ready) return ready.status();
    if (!*ready) continue;
    // Read into the backlog without handing frames out.
    auto frames = on_readable();
    if (!frames) return frames.status();
    for (auto& f : *frames) backlog_.push_back(std::move(f));
    // on_readable() marked the first HELLO seen; the loop above finds it in the backlog.
  }
}

Result<agent::Frame> AgentChannel::next_frame(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!backlog_.empty()) {
      agent::Frame f = std::move(backlog_.front());
      backlog_.pop_front();
      return f;
    }
    if (closed_) return error(Errc::io, "fc-agent closed the channel");
    if (Clock::now() >= deadline) {
      return error(Errc::timeout, "no frame from fc-agent within " +
                                      std::to_string(timeout.count()) + " ms");
    }
    auto ready = wait_for(POLLIN, deadline);
    if (!ready) return ready.status();
    if (!*ready) continue;
    auto frames = on_readable();
    if (!frames) return frames.status();
    for (auto& f : *frames) backlog_.push_back(std::move(f));
  }
}

Status AgentChannel::flush(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    FCVM_RETURN_IF_ERROR(on_writable());
    if (pending() == 0) return ok_status();
    if (Clock::now() >= deadline) {
      return error(Errc::timeout, "fc-agent did not take " + std::to_string(pending()) +
                                      " queued bytes within " + std::to_string(timeout.count()) +
                                      " ms");
    }
    auto ready = wait_for(POLLOUT, deadline);
    if (!ready) return ready.status();
  }
}

}  // namespace fcvm
