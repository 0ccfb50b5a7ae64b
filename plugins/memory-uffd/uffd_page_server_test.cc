// The page server against real userfaultfds: harness processes (testing/uffd_harness.cc)
// do what Firecracker does and check every byte they read.
#include "uffd_page_server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <mutex>
#include <random>

#include "client_record.h"
#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "firecracker_client.h"
#include "working_set.h"

namespace fcvm::uffd {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kImageBytes = 4 << 20;

// Keeps every line, so a test can assert the server said why it rejected someone.
class CapturingLogger final : public Logger {
 public:
  void write(LogLevel, std::string_view m) const override {
    std::lock_guard lock(mu_);
    lines_.emplace_back(m);
  }
  bool enabled(LogLevel) const override { return true; }
  std::shared_ptr<const Logger> child(std::string_view) const override {
    return std::shared_ptr<const Logger>(this, [](const Logger*) {});
  }
  std::string all() const {
    std::lock_guard lock(mu_);
    std::string s;
    for (const auto& l : lines_) s += l + "\n";
    return s;
  }

 private:
  mutable std::mutex mu_;
  mutable std::vector<std::string> lines_;
};

fs::path tool(const char* name) { return fs::path(FCVM_BINARY_DIR) / "tests" / name; }

class PageServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/userfaultfd", R_OK | W_OK) != 0 && ::geteuid() != 0) {
      GTEST_SKIP() << "needs root or read-write /dev/userfaultfd to create userfaultfds";
    }
    std::string tmpl = (fs::temp_directory_path() / "fcvm-uffd-test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    std::string image(kImageBytes, '\0');
    std::mt19937_64 rng(42);
    for (std::size_t i = 0; i < image.size(); i += 8) {
      const std::uint64_t v = rng();
      std::memcpy(image.data() + i, &v, 8);
    }
    ASSERT_TRUE(write_file_atomic(dir_ / "memory", image, 0600).ok());
    options_.memory_image = dir_ / "memory";
    options_.socket = dir_ / "mem.sock";
    options_.state_dir = dir_ / "state";
    options_.accept_any_client = true;
    log_ = std::make_shared<CapturingLogger>();
  }
  void TearDown() override {
    server_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  void start() {
    auto s = UffdPageServer::start(options_, log_);
    ASSERT_TRUE(s.ok()) << s.status().message();
    server_ = std::move(*s);
  }

  ChildProcess spawn_harness(std::vector<std::string> extra = {}, int stdin_fd = -1) {
    SpawnOptions o;
    o.argv = {tool("uffd-harness").string(), options_.socket.string(), options_.memory_image.string()};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    o.stdin_fd = stdin_fd;
    o.stderr_fd = 2;
    auto child = ChildProcess::spawn(o);
    EXPECT_TRUE(child.ok()) << child.status().message();
    return std::move(*child);
  }

  // Runs the server's loop until `done` holds; false when it did not within a minute (a
  // fault the server lost leaves its client waiting forever).
  template <class Done>
  bool serve_until(Done done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      pollfd p{server_->fd(), POLLIN, 0};
      ::poll(&p, 1, 20);
      if (Status st = server_->dispatch(); !st.ok()) {
        ADD_FAILURE() << "dispatch: " << st.message();
        return false;
      }
    }
    return true;
  }

  // Serves until `child` exited and the server has seen it go.
  ExitStatus serve_until_exit(ChildProcess& child) {
    const pid_t pid = child.pid();
    std::optional<ExitStatus> status;
    const bool ended = serve_until([&] {
      if (!status) status = child.try_wait();
      const auto served = server_->clients();
      return status && std::find(served.begin(), served.end(), pid) == served.end();
    });
    if (!ended) {
      ADD_FAILURE() << "pid " << pid << " still waits on its memory after a minute";
      (void)child.signal(SIGKILL);
      (void)child.wait();
    }
    return status.value_or(ExitStatus{-1, 0});
  }

  MemoryClientStats stats_of(pid_t pid) const {
    for (const auto& s : server_->stats()) {
      if (s.pid == pid) return s;
    }
    ADD_FAILURE() << "no stats for pid " << pid;
    return {};
  }

  fs::path dir_;
  MemoryServeOptions options_;
  std::shared_ptr<CapturingLogger> log_;
  std::unique_ptr<UffdPageServer> server_;
};

TEST_F(PageServerTest, ServesEveryPageOfTheImage) {
  start();
  auto harness = spawn_harness();
  const pid_t pid = harness.pid();
  EXPECT_TRUE(serve_until_exit(harness).success()) << log_->all();
  const auto s = stats_of(pid);
  EXPECT_FALSE(s.connected);
  EXPECT_EQ(s.bytes_copied, kImageBytes);
  EXPECT_EQ(s.pages_copied, kImageBytes / kPage);
  EXPECT_EQ(s.faults, kImageBytes / UffdPageServer::kDefaultChunkBytes) << "one fault per 64 KiB chunk";
  std::uint64_t histogram = 0;
  for (auto n : s.latency_us_log2) histogram += n;
  EXPECT_EQ(histogram, s.faults);
  EXPECT_EQ(s.to_json()["bytes_copied"], kImageBytes);
  EXPECT_TRUE(server_->clients().empty());
  EXPECT_TRUE(server_->recorded_clients().empty()) << "a departed client's record is removed";
}

TEST_F(PageServerTest, ChunkSizeSetsFaultsPerImage) {
  for (std::size_t chunk : {std::size_t{4096}, std::size_t{2 << 20}}) {
    options_.fault_chunk_bytes = chunk;
    start();
    auto harness = spawn_harness();
    const pid_t pid = harness.pid();
    EXPECT_TRUE(serve_until_exit(harness).success());
    EXPECT_EQ(stats_of(pid).faults, kImageBytes / chunk) << chunk;
    server_.reset();
  }
}

TEST_F(PageServerTest, ServesSeveralClientsAtOnceWithEveryHandshakeForm) {
  start();
  std::vector<ChildProcess> harnesses;
  harnesses.push_back(spawn_harness());
  harnesses.push_back(spawn_harness({"--regions", "4"}));
  harnesses.push_back(spawn_harness({"--old-format", "--size", "1048576", "--offset", "2097152"}));
  harnesses.push_back(spawn_harness({"--regions", "2", "--size", "2097152", "--offset", "1048576"}));
  std::vector<std::optional<ExitStatus>> status(harnesses.size());
  EXPECT_TRUE(serve_until([&] {
    bool all = true;
    for (std::size_t i = 0; i < harnesses.size(); ++i) {
      if (!status[i]) status[i] = harnesses[i].try_wait();
      all = all && status[i].has_value();
    }
    return all;
  }));
  for (std::size_t i = 0; i < status.size(); ++i) EXPECT_TRUE(status[i]->success()) << i << log_->all();
  EXPECT_EQ(server_->stats().size(), harnesses.size());
}

TEST_F(PageServerTest, RemovedRangesReadAsZerosAfterwards) {
  start();
  // 1 MiB at offset 64 KiB + 4 KiB: not chunk-aligned, so zero and file pages share chunks.
  auto harness = spawn_harness({"--dontneed", "69632:1048576"});
  const pid_t pid = harness.pid();
  EXPECT_TRUE(serve_until_exit(harness).success()) << log_->all();
  const auto s = stats_of(pid);
  EXPECT_EQ(s.remove_events, 1u);
  EXPECT_EQ(s.zero_pages, 1048576 / kPage);
  EXPECT_EQ(s.pages_copied, kImageBytes / kPage);
}

TEST_F(PageServerTest, RemovesRacingFaultsKeepEveryByteRight) {
  start();
  auto harness = spawn_harness({"--remove-storm", "200"});
  const pid_t pid = harness.pid();
  EXPECT_TRUE(serve_until_exit(harness).success()) << log_->all();
  const auto s = stats_of(pid);
  EXPECT_EQ(s.remove_events, 200u);
  EXPECT_EQ(s.zero_pages, kImageBytes / 2 / kPage);
  EXPECT_EQ(s.pages_copied, kImageBytes / 2 / kPage);
  std::cerr << "EAGAIN retries during the storm: " << s.eagain_retries << "\n";
}

TEST_F(PageServerTest, RejectsEachMalformedHandshakeAndKeepsServing) {
  options_.handshake_timeout = std::chrono::milliseconds(200);
  start();
  auto layout = testing::ClientLayout{kImageBytes, 0, 1, false};
  auto good = testing::FirecrackerClient::create(layout);
  ASSERT_TRUE(good.ok()) << good.status().message();
  const std::string base = std::to_string(reinterpret_cast<std::uint64_t>(good->memory()));
  struct Case {
    std::string message;
    bool send_fd;
    const char* log;
  };
  const std::vector<Case> cases = {
      {"this is not json", true, "not valid JSON"},
      {good->handshake_json(), false, "no uffd passed"},
      {R"([{"base_host_virt_addr":)" + base + R"(,"size":8388608,"offset":0}])", true, "outside the"},
      {R"([{"base_host_virt_addr":)" + base + R"(,"size":8192,"offset":0},{"base_host_virt_addr":)" + base +
           R"(,"size":4096,"offset":0}])",
       true, "overlap"},
      {R"([{"base_host_virt_addr":)" + base + R"(,"size":1099511627777000,"offset":0}])", true, "absurd"},
      {R"([{"base_host_virt_addr":)" + base + R"(,"size":12288,"offset":0,"page_size":12288}])", true,
       "power of two"},
      {[&] {
         nlohmann::json many = nlohmann::json::array();
         for (int i = 0; i < 65; ++i) {
           many.push_back({{"base_host_virt_addr", reinterpret_cast<std::uint64_t>(good->memory()) + i * kPage},
                           {"size", kPage},
                           {"offset", 0}});
         }
         return many.dump();
       }(),
       true, "65 regions; at most 64"},
      // Arrives in pieces or whole, it is never read past 64 KiB.
      {"[" + std::string(70000, ' ') + "]", true, "larger than 64 KiB|not valid JSON"},
  };
  for (const auto& c : cases) {
    auto client = testing::FirecrackerClient::create(layout);
    ASSERT_TRUE(client.ok());
    ASSERT_TRUE(client->connect_and_send(options_.socket, c.message, c.send_fd ? client->uffd() : -1).ok());
    char byte;
    // The server closes a rejected connection: recv sees EOF.
    EXPECT_TRUE(serve_until([&] { return ::recv(client->socket(), &byte, 1, MSG_DONTWAIT) == 0; }));
    EXPECT_THAT(log_->all(), ContainsRegex(c.log)) << c.message.substr(0, 200);
  }
  // Not a userfaultfd: a pipe end instead.
  {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    UniqueFd r(p[0]), w(p[1]);
    auto client = testing::FirecrackerClient::create(layout);
    ASSERT_TRUE(client.ok());
    ASSERT_TRUE(client->connect_and_send(options_.socket, client->handshake_json(), r.get()).ok());
    char byte;
    EXPECT_TRUE(serve_until([&] { return ::recv(client->socket(), &byte, 1, MSG_DONTWAIT) == 0; }));
    EXPECT_THAT(log_->all(), HasSubstr("not a userfaultfd"));
  }
  // Silence: dropped once the handshake timeout passes.
  {
    UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, options_.socket.c_str());
    ASSERT_EQ(::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    char byte;
    EXPECT_TRUE(serve_until([&] { return ::recv(sock.get(), &byte, 1, MSG_DONTWAIT) == 0; }));
    EXPECT_THAT(log_->all(), HasSubstr("no handshake within 200 ms"));
  }
  EXPECT_TRUE(server_->clients().empty());
  auto harness = spawn_harness();
  EXPECT_TRUE(serve_until_exit(harness).success()) << log_->all();
}

TEST_F(PageServerTest, AcceptsOnlyExpectedPids) {
  options_.accept_any_client = false;
  options_.handshake_timeout = std::chrono::milliseconds(200);
  start();
  int go[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  UniqueFd go_read(go[0]), go_write(go[1]);
  auto stranger = spawn_harness({"--wait-stdin"}, go_read.get());
  ASSERT_EQ(::write(go_write.get(), "g", 1), 1);
  EXPECT_TRUE(serve_until([&] { return log_->all().find("not announced as a VMM of a clone") != std::string::npos; }));
  EXPECT_THAT(log_->all(), HasSubstr("rejected the handshake of pid " + std::to_string(stranger.pid())));
  EXPECT_TRUE(server_->stats().empty());
  stranger.kill();  // it waits forever on its first fault, as a real VMM would

  int go2[2];
  ASSERT_EQ(::pipe2(go2, O_CLOEXEC), 0);
  UniqueFd go2_read(go2[0]), go2_write(go2[1]);
  auto clone = spawn_harness({"--wait-stdin"}, go2_read.get());
  server_->expect_client(clone.pid());
  ASSERT_EQ(::write(go2_write.get(), "g", 1), 1);
  EXPECT_TRUE(serve_until_exit(clone).success()) << log_->all();
}

TEST_F(PageServerTest, AClientAnnouncedAfterItConnectedIsServed) {
  options_.accept_any_client = false;
  start();
  auto clone = spawn_harness();
  // Its handshake waits unread while nobody announced it.
  EXPECT_TRUE(serve_until([&] { return log_->all().find("accepted a connection from pid " + std::to_string(clone.pid())) != std::string::npos; }));
  EXPECT_TRUE(server_->clients().empty());
  server_->expect_client(clone.pid());
  EXPECT_TRUE(serve_until_exit(clone).success()) << log_->all();
  EXPECT_GT(stats_of(clone.pid()).faults, 0u);
}

TEST_F(PageServerTest, KillsItsClientsWhenDestroyed) {
  start();
  int go[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  UniqueFd go_read(go[0]), go_write(go[1]);
  // Reads the image, then holds on (connected, idle) until its stdin closes.
  auto harness = spawn_harness({"--wait-stdin", "--hold"}, go_read.get());
  const pid_t pid = harness.pid();
  ASSERT_EQ(::write(go_write.get(), "g", 1), 1);
  EXPECT_TRUE(serve_until([&] {
    const auto all = server_->stats();
    return !all.empty() && all[0].pid == pid && all[0].pages_copied == kImageBytes / kPage;
  }));
  server_.reset();
  const auto status = harness.wait();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->signal, SIGKILL);
}

TEST_F(PageServerTest, PrefetchedWorkingSetSavesFaults) {
  options_.snapshot_dir = dir_;
  start();
  auto first = spawn_harness({"--touch", "256"});
  const pid_t first_pid = first.pid();
  ASSERT_TRUE(serve_until_exit(first).success());
  const auto recorded = WorkingSet::load(dir_, MappedImage::open(options_.memory_image)->identity());
  ASSERT_TRUE(recorded.has_value()) << log_->all();
  EXPECT_EQ(recorded->offsets.size(), stats_of(first_pid).faults);
  EXPECT_EQ(recorded->offsets.front(), 0u) << "first touch first";

  auto second = spawn_harness({"--touch", "256"});
  const pid_t second_pid = second.pid();
  ASSERT_TRUE(serve_until_exit(second).success());
  const auto a = stats_of(first_pid), b = stats_of(second_pid);
  EXPECT_EQ(a.prefetched_pages, 0u);
  EXPECT_GT(b.prefetched_pages, 0u);
  EXPECT_EQ(b.pages_copied, 256u);
  EXPECT_LT(b.faults, a.faults) << "first " << a.faults << " faults, second " << b.faults;

  // With prefetch off nothing is pushed.
  server_.reset();
  options_.prefetch = false;
  start();
  auto third = spawn_harness({"--touch", "256"});
  const pid_t third_pid = third.pid();
  ASSERT_TRUE(serve_until_exit(third).success());
  EXPECT_EQ(stats_of(third_pid).prefetched_pages, 0u);
  EXPECT_EQ(stats_of(third_pid).faults, a.faults);
}

TEST_F(PageServerTest, StaleWorkingSetIsRecordedAgain) {
  options_.snapshot_dir = dir_;
  start();
  auto first = spawn_harness({"--touch", "16"});
  ASSERT_TRUE(serve_until_exit(first).success());
  server_.reset();
  // The image changes (same size, new mtime): the record no longer describes it.
  const timespec times[2] = {{0, UTIME_OMIT}, {12345, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, options_.memory_image.c_str(), times, 0), 0);
  const auto identity = MappedImage::open(options_.memory_image)->identity();
  EXPECT_FALSE(WorkingSet::load(dir_, identity).has_value());
  start();
  auto second = spawn_harness({"--touch", "64"});
  const pid_t pid = second.pid();
  ASSERT_TRUE(serve_until_exit(second).success());
  EXPECT_EQ(stats_of(pid).prefetched_pages, 0u) << "a stale record is not used";
  const auto rewritten = WorkingSet::load(dir_, identity);
  ASSERT_TRUE(rewritten.has_value());
  EXPECT_EQ(rewritten->offsets.size(), 64 * kPage / UffdPageServer::kDefaultChunkBytes);
}

std::string proc_field(pid_t pid, const char* file) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  std::string s;
  std::getline(in, s);
  return s;
}

// True when some thread of `pid` sleeps in the userfaultfd fault path.
bool waits_on_fault(pid_t pid) {
  std::error_code ec;
  for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(t.path() / "wchan");
    std::string wchan;
    std::getline(in, wchan);
    if (wchan == "handle_userfault") return true;
  }
  return false;
}

TEST_F(PageServerTest, RestartedServerAdoptsTheClientsOfAKilledOne) {
  if (::geteuid() != 0) GTEST_SKIP() << "pidfd_getfd of another process's uffd needs root here";
  // The first server runs in its own process, stops itself after 8 faults and is killed.
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  UniqueFd out_read(out[0]), out_write(out[1]);
  SpawnOptions so;
  so.argv = {tool("uffd-serve-tool").string(), options_.memory_image.string(), options_.socket.string(),
             options_.state_dir.string(), "--accept-any", "--stop-after-faults", "8"};
  so.stdout_fd = out_write.get();
  so.stderr_fd = 2;
  auto first = ChildProcess::spawn(so);
  ASSERT_TRUE(first.ok()) << first.status().message();
  out_write.reset();
  char ready[6] = {};
  ASSERT_EQ(::read(out_read.get(), ready, 6), 6);
  ASSERT_EQ(std::string(ready, 6), "ready\n");

  // Removes a range once served, so the adopted client must keep serving zeros there.
  SpawnOptions ho;
  ho.argv = {tool("uffd-harness").string(), options_.socket.string(), options_.memory_image.string(),
             "--dontneed", "0:65536"};
  ho.stderr_fd = 2;
  auto harness = ChildProcess::spawn(ho);
  ASSERT_TRUE(harness.ok());
  // Wait (no time bound) until the server stopped itself and the harness hangs on a fault.
  while (proc_field(first->pid(), "stat").find(") T") == std::string::npos ||
         !waits_on_fault(harness->pid())) {
    ::usleep(10000);
  }
  ASSERT_TRUE(fs::exists(ClientRecord::path_in(options_.state_dir, harness->pid())));
  first->kill();

  start();
  EXPECT_THAT(server_->recorded_clients(), Contains(harness->pid()));
  ASSERT_TRUE(server_->adopt(harness->pid()).ok()) << log_->all();
  const auto status = serve_until_exit(*harness);
  EXPECT_TRUE(status.success()) << status.describe() << "\n" << log_->all();
  const auto s = stats_of(harness->pid());
  EXPECT_TRUE(s.adopted);
  EXPECT_EQ(s.remove_events, 1u);
  EXPECT_GT(s.pages_copied, 0u);
  EXPECT_LT(s.pages_copied, kImageBytes / kPage) << "the first server served part of it";
}

TEST_F(PageServerTest, AdoptRefusesAGoneProcess) {
  start();
  ClientRecord rec{999999, 1, {GuestRegion{1 << 30, kPage, 0, kPage}}, {}};
  ASSERT_TRUE(rec.save(options_.state_dir).ok());
  Status st = server_->adopt(999999);
  EXPECT_EQ(st.code(), Errc::not_found);
  EXPECT_FALSE(fs::exists(ClientRecord::path_in(options_.state_dir, 999999)));
  EXPECT_EQ(server_->adopt(12345678).code(), Errc::not_found);
}

TEST_F(PageServerTest, RefusesASecondLiveServerOnTheSameSocket) {
  start();
  auto second = UffdPageServer::start(options_, log_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Errc::already_exists);
}

}  // namespace
}  // namespace fcvm::uffd
