#include "uffd_page_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <string>

#include "client_record.h"
#include "guest_region.h"

namespace fcvm::uffd {

namespace fs = std::filesystem;

namespace {

// epoll tags: the kind in the high 32 bits, an fd or pid in the low ones.
enum Tag : std::uint64_t { kListen = 1, kTimer, kWork, kHandshake, kUffd, kPidfd, kRetry };

// How soon faults left unresolved by a racing remove are tried again.
constexpr long kFaultRetryNs = 200'000;
std::uint64_t tag(Tag kind, std::uint32_t value) { return std::uint64_t(kind) << 32 | value; }

constexpr std::size_t kPrefetchBatch = 64;  // chunks per loop turn, so faults stay served

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_getfd(int pidfd, int fd) { return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)); }

bool is_userfaultfd(int fd) {
  char target[64] = {};
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  return n > 0 && std::string_view(target, std::size_t(n)) == "anon_inode:[userfaultfd]";
}

Result<UniqueFd> bind_socket(const fs::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.native().size() >= sizeof addr.sun_path) {
    return error(Errc::invalid_argument, "socket path " + path.string() +
                                             " is too long for a unix socket; use a shorter data dir");
  }
  std::strcpy(addr.sun_path, path.c_str());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_status("socket");
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EADDRINUSE) return errno_status("bind " + path.string());
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      return error(Errc::already_exists, "a page server is already serving on " + path.string() +
                                             "; stop it first");
    }
    ::unlink(path.c_str());  // a dead server's socket
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      return errno_status("bind " + path.string());
    }
  }
  if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd.get(), 64) != 0) {
    Status st = errno_status("listen on " + path.string());
    ::unlink(path.c_str());
    return st;
  }
  return fd;
}

}  // namespace

UffdPageServer::UffdPageServer(const MemoryServeOptions& options, LoggerPtr log, MappedImage image)
    : options_(options),
      log_(std::move(log)),
      image_(std::move(image)),
      host_page_size_(static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE))),
      chunk_bytes_(options.fault_chunk_bytes ? options.fault_chunk_bytes : kDefaultChunkBytes) {}

Result<std::unique_ptr<UffdPageServer>> UffdPageServer::start(const MemoryServeOptions& options,
                                                              LoggerPtr log) {
  if (!log) log = null_logger();
  if (options.fault_chunk_bytes & (options.fault_chunk_bytes - 1)) {
    return error(Errc::invalid_argument, "memory-uffd: fault chunk " +
                                             std::to_string(options.fault_chunk_bytes) +
                                             " bytes is not a power of two");
  }
  if (options.state_dir.empty()) {
    return error(Errc::invalid_argument, "memory-uffd: no state dir to keep client records in");
  }
  auto image = MappedImage::open(options.memory_image);
  if (!image) return image.status().with_context("memory-uffd: ");
  std::unique_ptr<UffdPageServer> s(new UffdPageServer(options, std::move(log), std::move(*image)));
  s->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  s->timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  s->work_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  s->retry_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!s->epoll_ || !s->timer_ || !s->work_ || !s->retry_) {
    return errno_status("memory-uffd: epoll/timerfd/eventfd");
  }
  FCVM_RETURN_IF_ERROR(s->watch(s->timer_.get(), tag(kTimer, 0)));
  FCVM_RETURN_IF_ERROR(s->watch(s->retry_.get(), tag(kRetry, 0)));
  FCVM_RETURN_IF_ERROR(s->watch(s->work_.get(), tag(kWork, 0)));
  auto listen = bind_socket(options.socket);
  if (!listen) return listen.status().with_context("memory-uffd: ");
  s->listen_ = std::move(*listen);
  if (Status st = s->watch(s->listen_.get(), tag(kListen, 0)); !st.ok()) return st;  // ~ unlinks
  if (::mkdir(options.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return errno_status("memory-uffd: create state dir " + options.state_dir.string());
  }
  if (options.prefetch && !options.snapshot_dir.empty()) {
    s->working_set_ = WorkingSet::load(options.snapshot_dir, s->image_.identity());
    s->recorded_ = s->working_set_.has_value();
  }
  s->log_->info("serving " + options.memory_image.string() + " on " + options.socket.string() +
                (s->working_set_ ? ", working set of " + std::to_string(s->working_set_->offsets.size()) +
                                       " pages to prefetch"
                                 : ""));
  return s;
}

UffdPageServer::~UffdPageServer() {
  finish_recording();
  for (auto& [pid, client] : clients_) {
    if (options_.kill_clients_on_exit) {
      ::syscall(SYS_pidfd_send_signal, client->pidfd(), SIGKILL, nullptr, 0);
      ClientRecord::remove(options_.state_dir, pid);
      log_->warn("killed VMM pid " + std::to_string(pid) + ": its page server is stopping");
    }
  }
  if (listen_) ::unlink(options_.socket.c_str());
}

Status UffdPageServer::watch(int fd, std::uint64_t t) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = t;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return errno_status("memory-uffd: epoll_ctl");
  return ok_status();
}

Status UffdPageServer::dispatch() {
  std::array<epoll_event, 64> events;
  const int n = ::epoll_wait(epoll_.get(), events.data(), int(events.size()), 0);
  if (n < 0) {
    if (errno == EINTR) return ok_status();
    return errno_status("memory-uffd: epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    const auto kind = Tag(events[i].data.u64 >> 32);
    const auto value = std::uint32_t(events[i].data.u64);
    switch (kind) {
      case kListen: on_accept(); break;
      case kTimer: expire_handshakes(); break;
      case kWork: run_prefetch(); break;
      case kHandshake: on_handshake(int(value)); break;
      case kUffd: {
        auto it = clients_.find(pid_t(value));
        if (it == clients_.end()) break;
        if (Status st = it->second->handle_events(); !st.ok()) drop(pid_t(value), st.message());
        break;
      }
      case kPidfd: drop(pid_t(value), "exited"); break;
      case kRetry: retry_faults(); break;
    }
  }
  arm_retry();
  if (recorder_ && recorder_->closed()) finish_recording();
  save_removed();
  return ok_status();
}

void UffdPageServer::retry_faults() {
  std::uint64_t ticks = 0;
  (void)!::read(retry_.get(), &ticks, sizeof ticks);
  retry_armed_ = false;  // one-shot: it fired
  std::vector<std::pair<pid_t, std::string>> failed;
  for (auto& [pid, client] : clients_) {
    if (!client->has_unresolved_faults()) continue;
    if (Status st = client->retry_faults(); !st.ok()) failed.emplace_back(pid, st.message());
  }
  for (const auto& [pid, why] : failed) drop(pid, why);
}

void UffdPageServer::arm_retry() {
  const bool due = std::any_of(clients_.begin(), clients_.end(),
                               [](const auto& c) { return c.second->has_unresolved_faults(); });
  // Called after every dispatch (the fault path): no syscall unless the state changes. An
  // armed timer keeps its time, so busy clients cannot postpone another's retry.
  if (due == retry_armed_) return;
  itimerspec spec{};
  if (due) spec.it_value.tv_nsec = kFaultRetryNs;
  ::timerfd_settime(retry_.get(), 0, &spec, nullptr);
  retry_armed_ = due;
}

void UffdPageServer::save_removed() {
  for (pid_t pid : removed_changed_) {
    auto it = clients_.find(pid);
    if (it == clients_.end()) continue;
    const auto start_time = process_start_time(pid);
    if (!start_time) continue;
    ClientRecord record{pid, *start_time, it->second->regions(), it->second->removed()};
    if (Status st = record.save(options_.state_dir); !st.ok()) log_->warn(st.message());
  }
  removed_changed_.clear();
}

void UffdPageServer::on_accept() {
  for (;;) {
    UniqueFd conn(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!conn) {
      if (errno != EAGAIN && errno != EINTR) log_->warn("accept: " + std::string(std::strerror(errno)));
      if (errno == EINTR) continue;
      return;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      log_->warn("rejected a connection: SO_PEERCRED failed: " + std::string(std::strerror(errno)));
      continue;
    }
    // A VMM may connect before its launcher announced its pid: it waits, unread, until
    // expect_client() or its deadline.
    const bool announced = options_.accept_any_client || expected_.count(cred.pid) > 0;
    const int fd = conn.get();
    if (announced && !watch(fd, tag(kHandshake, std::uint32_t(fd))).ok()) continue;
    if (!announced) {
      log_->info("accepted a connection from pid " + std::to_string(cred.pid) +
                 "; its handshake waits until the pid is announced");
    }
    pending_[fd] = Pending{std::move(conn), cred.pid,
                           std::chrono::steady_clock::now() + options_.handshake_timeout, announced};
    arm_timer();
  }
}

void UffdPageServer::reject(int fd, const std::string& why) {
  auto it = pending_.find(fd);
  if (it == pending_.end()) return;
  log_->warn("rejected the handshake of pid " + std::to_string(it->second.pid) + ": " + why);
  pending_.erase(it);  // closing the fd also removes it from the epoll set
  arm_timer();
}

void UffdPageServer::on_handshake(int fd) {
  auto it = pending_.find(fd);
  if (it == pending_.end()) return;
  std::string buf(kMaxHandshakeBytes, '\0');
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  std::vector<UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int received = -1;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.emplace_back(received);
    }
  }
  if (n < 0) return reject(fd, std::string("recvmsg: ") + std::strerror(errno));
  if (n == 0) return reject(fd, "connection closed before the handshake");
  if (msg.msg_flags & MSG_CTRUNC) return reject(fd, "more file descriptors than the one uffd");
  if (std::size_t(n) == buf.size()) return reject(fd, "handshake larger than 64 KiB");
  if (fds.size() != 1) return reject(fd, fds.empty() ? "no uffd passed with the regions (SCM_RIGHTS)"
                                                     : "more than one file descriptor passed");
  if (!is_userfaultfd(fds[0].get())) return reject(fd, "the passed file descriptor is not a userfaultfd");
  auto regions = parse_handshake(std::string_view(buf.data(), std::size_t(n)), image_.size(), host_page_size_);
  if (!regions) return reject(fd, regions.status().message());
  const pid_t pid = it->second.pid;
  if (clients_.count(pid)) return reject(fd, "this VMM is already being served");
  const auto start_time = process_start_time(pid);
  UniqueFd pidfd(pidfd_open(pid));
  if (!pidfd || !start_time) return reject(fd, "the VMM process is gone");
  ClientRecord record{pid, *start_time, *regions, {}};
  if (Status st = record.save(options_.state_dir); !st.ok()) {
    return reject(fd, "cannot persist its regions: " + st.message());
  }
  UniqueFd socket = std::move(it->second.socket);
  pending_.erase(it);
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  arm_timer();
  auto client = std::make_unique<UffdClient>(pid, std::move(fds[0]), std::move(pidfd), std::move(socket),
                                             std::move(*regions), image_, chunk_bytes_, log_);
  if (options_.prefetch && working_set_) {
    client->set_prefetch(working_set_->offsets);
  } else if (options_.prefetch && !options_.snapshot_dir.empty() && !recorded_ && !recorder_) {
    recorder_.emplace(image_.identity(), kWorkingSetPages, kWorkingSetWindow);
    recorder_pid_ = pid;
    client->set_first_touch([this](std::uint64_t off) { recorder_->touch(off); });
  }
  log_->info("serving pid " + std::to_string(pid) + " (" + std::to_string(client->regions().size()) +
             " regions)");
  if (Status st = add_client(std::move(client)); !st.ok()) drop(pid, st.message());
}

Status UffdPageServer::add_client(std::unique_ptr<UffdClient> client) {
  const pid_t pid = client->pid();
  UffdClient* c = client.get();
  // Persisted once per dispatch(), not per event: a balloon sends removes in bursts.
  c->set_on_remove([this, pid] { removed_changed_.insert(pid); });
  clients_[pid] = std::move(client);
  FCVM_RETURN_IF_ERROR(watch(c->uffd(), tag(kUffd, std::uint32_t(pid))));
  FCVM_RETURN_IF_ERROR(watch(c->pidfd(), tag(kPidfd, std::uint32_t(pid))));
  if (c->prefetch_pending()) {
    const std::uint64_t one = 1;
    if (::write(work_.get(), &one, sizeof one) < 0) return errno_status("memory-uffd: eventfd");
  }
  return ok_status();
}

void UffdPageServer::drop(pid_t pid, const std::string& why) {
  auto it = clients_.find(pid);
  if (it == clients_.end()) return;
  if (why == "exited") {
    log_->info("pid " + std::to_string(pid) + " exited");
  } else {
    log_->warn("dropped pid " + std::to_string(pid) + ": " + why);
  }
  if (pid == recorder_pid_) finish_recording();
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second->uffd(), nullptr);
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second->pidfd(), nullptr);
  MemoryClientStats stats = it->second->stats();
  stats.connected = false;
  if (departed_.size() == kMaxDeparted) departed_.erase(departed_.begin());
  departed_.push_back(stats);
  clients_.erase(it);
  expected_.erase(pid);  // a later process with a reused pid is not a clone
  ClientRecord::remove(options_.state_dir, pid);
}

void UffdPageServer::expire_handshakes() {
  std::uint64_t ticks = 0;
  (void)!::read(timer_.get(), &ticks, sizeof ticks);
  const auto now = std::chrono::steady_clock::now();
  std::vector<int> expired;
  for (const auto& [fd, p] : pending_) {
    if (p.deadline <= now) expired.push_back(fd);
  }
  for (int fd : expired) {
    const std::string ms = std::to_string(options_.handshake_timeout.count()) + " ms";
    reject(fd, pending_.at(fd).announced
                   ? "no handshake within " + ms
                   : "not announced as a VMM of a clone of this snapshot within " + ms);
  }
  arm_timer();
}

void UffdPageServer::arm_timer() {
  itimerspec spec{};
  if (!pending_.empty()) {
    auto earliest = std::min_element(pending_.begin(), pending_.end(), [](const auto& a, const auto& b) {
                      return a.second.deadline < b.second.deadline;
                    })->second.deadline;
    const auto ns = std::max<std::int64_t>(
        1, std::chrono::duration_cast<std::chrono::nanoseconds>(earliest - std::chrono::steady_clock::now()).count());
    spec.it_value.tv_sec = ns / 1'000'000'000;
    spec.it_value.tv_nsec = ns % 1'000'000'000;
  }
  ::timerfd_settime(timer_.get(), 0, &spec, nullptr);
}

void UffdPageServer::run_prefetch() {
  std::uint64_t count = 0;
  (void)!::read(work_.get(), &count, sizeof count);
  bool more = false;
  std::vector<std::pair<pid_t, std::string>> failed;
  for (auto& [pid, client] : clients_) {
    if (!client->prefetch_pending()) continue;
    if (Status st = client->prefetch_some(kPrefetchBatch); !st.ok()) {
      failed.emplace_back(pid, st.message());
      continue;
    }
    more = more || client->prefetch_pending();
  }
  for (const auto& [pid, why] : failed) drop(pid, why);
  if (more) {
    const std::uint64_t one = 1;
    (void)!::write(work_.get(), &one, sizeof one);
  }
}

void UffdPageServer::finish_recording() {
  if (!recorder_) return;
  auto set = recorder_->finish();
  auto it = clients_.find(recorder_pid_);
  if (it != clients_.end()) it->second->set_first_touch(nullptr);
  recorder_.reset();
  recorder_pid_ = 0;
  recorded_ = true;
  if (!set || set->offsets.empty()) return;
  if (Status st = set->save(options_.snapshot_dir); !st.ok()) {
    log_->warn("working set not saved: " + st.message());
    return;
  }
  log_->info("recorded a working set of " + std::to_string(set->offsets.size()) + " pages");
  working_set_ = std::move(set);
}

Status UffdPageServer::adopt(pid_t pid) {
  if (clients_.count(pid)) return ok_status();
  auto record = ClientRecord::load(options_.state_dir, pid, image_.size(), host_page_size_);
  if (!record) return record.status().with_context("memory-uffd: ");
  const auto start_time = process_start_time(pid);
  if (!start_time || *start_time != record->start_time) {
    ClientRecord::remove(options_.state_dir, pid);
    return error(Errc::not_found, "memory-uffd: VMM pid " + std::to_string(pid) +
                                      " is gone; its record was removed");
  }
  UniqueFd pidfd(pidfd_open(pid));
  if (!pidfd) return errno_status("memory-uffd: pidfd_open " + std::to_string(pid));
  const fs::path fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  std::error_code ec;
  int target = -1;
  for (const auto& entry : fs::directory_iterator(fd_dir, ec)) {
    std::error_code link_ec;
    if (fs::read_symlink(entry.path(), link_ec).string() == "anon_inode:[userfaultfd]") {
      if (target >= 0) {
        return error(Errc::protocol, "memory-uffd: VMM pid " + std::to_string(pid) +
                                         " holds several userfaultfds; cannot tell which is served");
      }
      target = std::stoi(entry.path().filename().string());
    }
  }
  if (ec) return error(Errc::io, "memory-uffd: list " + fd_dir.string() + ": " + ec.message());
  if (target < 0) {
    return error(Errc::not_found, "memory-uffd: VMM pid " + std::to_string(pid) + " holds no userfaultfd");
  }
  UniqueFd uffd(pidfd_getfd(pidfd.get(), target));
  if (!uffd) {
    if (errno == EPERM) {
      return error(Errc::unavailable, "memory-uffd: no permission to take VMM pid " + std::to_string(pid) +
                                          "'s uffd (pidfd_getfd needs ptrace rights); run serve as the "
                                          "VMM's user or root");
    }
    return errno_status("memory-uffd: pidfd_getfd from pid " + std::to_string(pid));
  }
  auto client = std::make_unique<UffdClient>(pid, std::move(uffd), std::move(pidfd), UniqueFd(),
                                             record->regions, image_, chunk_bytes_, log_);
  client->restore_removed(record->removed);
  client->stats().adopted = true;
  UffdClient* c = client.get();
  FCVM_RETURN_IF_ERROR(add_client(std::move(client)));
  log_->info("adopted VMM pid " + std::to_string(pid));
  // Faults the dead server read but never answered are raised again once woken.
  if (Status st = c->wake_all(); !st.ok()) {
    drop(pid, st.message());
    return st;
  }
  return ok_status();
}

void UffdPageServer::expect_client(pid_t pid) {
  expected_.insert(pid);
  for (auto& [fd, p] : pending_) {
    if (p.pid != pid || p.announced) continue;
    if (Status st = watch(fd, tag(kHandshake, std::uint32_t(fd))); !st.ok()) {
      log_->warn(st.message());
      continue;
    }
    p.announced = true;
  }
}

std::vector<pid_t> UffdPageServer::recorded_clients() const { return ClientRecord::list(options_.state_dir); }

std::vector<pid_t> UffdPageServer::clients() const {
  std::vector<pid_t> pids;
  for (const auto& [pid, c] : clients_) pids.push_back(pid);
  return pids;
}

std::vector<MemoryClientStats> UffdPageServer::stats() const {
  std::vector<MemoryClientStats> all;
  for (const auto& [pid, c] : clients_) all.push_back(c->stats());
  all.insert(all.end(), departed_.begin(), departed_.end());
  return all;
}

}  // namespace fcvm::uffd
