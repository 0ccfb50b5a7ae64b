// UffdPageServer: the memory-uffd page server. One epoll loop serves every VMM restored
// from one snapshot, speaking Firecracker's UFFD handshake (guest_region.h).
//
// Life of a client: a VMM connects to the socket; SO_PEERCRED names its pid, which must
// be announced with expect_client() (unless accept_any_client) before handshake_timeout
// (a connection that came first waits unread); it sends its one message (regions + uffd)
// before handshake_timeout; its regions are persisted to
// state_dir/clients/PID.json; from then on its faults are resolved from the image until
// its process exits (seen on its pidfd). A client that breaks any rule is dropped with a
// log line; the others are unaffected.
//
// Working-set prefetch: with options.prefetch and a snapshot_dir, the first client while
// no valid record exists is recorded (first touches, at most kWorkingSetPages pages within
// kWorkingSetWindow of its handshake); every later client gets those chunks pushed
// right after its handshake, in first-touch order, between the loop's other work.
//
// Threading: everything runs on the owner's thread inside dispatch().
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "fcvm/log.h"
#include "fcvm/memory.h"
#include "fcvm/unique_fd.h"
#include "mapped_image.h"
#include "uffd_client.h"
#include "working_set.h"

namespace fcvm::uffd {

class UffdPageServer final : public MemoryServer {
 public:
  static constexpr std::size_t kDefaultChunkBytes = 64 * 1024;
  static constexpr std::size_t kWorkingSetPages = 64 * 1024;
  static constexpr std::chrono::seconds kWorkingSetWindow{10};
  static constexpr std::size_t kMaxHandshakeBytes = 64 * 1024;
  static constexpr std::size_t kMaxDeparted = 1024;  // counters kept of clients gone

  // Maps the image, binds the socket (0600; a stale socket of a dead server is replaced,
  // a live one is already_exists) and loads the working-set record. Nothing is left behind
  // on failure.
  static Result<std::unique_ptr<UffdPageServer>> start(const MemoryServeOptions& options,
                                                       LoggerPtr log);
  ~UffdPageServer() override;

  int fd() const override { return epoll_.get(); }
  Status dispatch() override;
  // Also releases a connection of `pid` waiting for this announcement.
  void expect_client(pid_t pid) override;
  Status adopt(pid_t pid) override;
  std::vector<pid_t> recorded_clients() const override;
  std::vector<pid_t> clients() const override;
  std::vector<MemoryClientStats> stats() const override;

 private:
  struct Pending {
    UniqueFd socket;
    pid_t pid = 0;
    std::chrono::steady_clock::time_point deadline;
    bool announced = false;  // its pid was expected: its handshake is read
  };

  UffdPageServer(const MemoryServeOptions& options, LoggerPtr log, MappedImage image);
  Status watch(int fd, std::uint64_t tag);
  void on_accept();
  void on_handshake(int fd);
  void reject(int fd, const std::string& why);
  Status add_client(std::unique_ptr<UffdClient> client);
  void drop(pid_t pid, const std::string& why);
  void expire_handshakes();
  void arm_timer();
  // Faults a racing remove left unresolved are retried on the retry timer, armed while any
  // client has some.
  void retry_faults();
  void arm_retry();
  void run_prefetch();
  void finish_recording();
  // Rewrites the records of clients whose removed ranges grew.
  void save_removed();

  MemoryServeOptions options_;
  LoggerPtr log_;
  MappedImage image_;
  std::uint64_t host_page_size_;
  std::size_t chunk_bytes_;
  UniqueFd epoll_, listen_, timer_, work_;
  UniqueFd retry_;  // armed while a client has faults a racing remove left unresolved
  bool retry_armed_ = false;
  std::map<int, Pending> pending_;
  std::map<pid_t, std::unique_ptr<UffdClient>> clients_;
  std::set<pid_t> expected_;
  std::set<pid_t> removed_changed_;
  std::vector<MemoryClientStats> departed_;
  std::optional<WorkingSet> working_set_;
  std::optional<WorkingSetRecorder> recorder_;
  pid_t recorder_pid_ = 0;
  bool recorded_ = false;  // this server already recorded (or loaded) a working set
};

}  // namespace fcvm::uffd
