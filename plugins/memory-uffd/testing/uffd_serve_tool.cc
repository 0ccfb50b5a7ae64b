// uffd-serve-tool: a page-server process for tests, standing in for `fcvm snapshot serve`
// until that exists. Serves IMAGE on SOCKET until SIGTERM/SIGINT, then prints every
// client's counters as one JSON array on stdout. Prints "ready" on stdout once serving.
//
//   uffd-serve-tool IMAGE SOCKET STATE_DIR [--snapshot-dir DIR] [--prefetch on|off]
//                   [--accept-any] [--expect PID]... [--adopt-recorded] [--chunk BYTES]
//                   [--handshake-timeout-ms N] [--stop-after-faults N] [--keep-clients]
// --stop-after-faults N: SIGSTOP itself once N faults were served (restart tests);
// --adopt-recorded: take over every client recorded in STATE_DIR by a dead server.
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "stderr_logger.h"
#include "uffd_page_server.h"

namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "uffd-serve-tool: %s\n", why.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace fcvm;
  if (argc < 4) die("usage: uffd-serve-tool IMAGE SOCKET STATE_DIR [options]");
  MemoryServeOptions options;
  options.memory_image = argv[1];
  options.socket = argv[2];
  options.state_dir = argv[3];
  std::vector<pid_t> expect;
  bool adopt_recorded = false;
  std::uint64_t stop_after = 0;
  for (int i = 4; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--snapshot-dir") options.snapshot_dir = next();
    else if (a == "--prefetch") options.prefetch = next() == "on";
    else if (a == "--accept-any") options.accept_any_client = true;
    else if (a == "--expect") expect.push_back(std::stoi(next()));
    else if (a == "--adopt-recorded") adopt_recorded = true;
    else if (a == "--chunk") options.fault_chunk_bytes = std::stoull(next());
    else if (a == "--handshake-timeout-ms") options.handshake_timeout = std::chrono::milliseconds(std::stoll(next()));
    else if (a == "--stop-after-faults") stop_after = std::stoull(next());
    else if (a == "--keep-clients") options.kill_clients_on_exit = false;
    else die("unknown option " + a);
  }
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  UniqueFd signals(::signalfd(-1, &mask, SFD_CLOEXEC));

  auto log = std::make_shared<uffd::testing::StderrLogger>("uffd-serve-tool");
  auto server = uffd::UffdPageServer::start(options, log);
  if (!server) die(server.status().message());
  for (pid_t pid : expect) (*server)->expect_client(pid);
  if (adopt_recorded) {
    for (pid_t pid : (*server)->recorded_clients()) {
      if (Status st = (*server)->adopt(pid); !st.ok()) log->warn(st.message());
    }
  }
  std::printf("ready\n");
  std::fflush(stdout);

  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = (*server)->fd();
  ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, (*server)->fd(), &ev);
  ev.data.fd = signals.get();
  ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, signals.get(), &ev);
  for (;;) {
    epoll_event ready{};
    if (::epoll_wait(ep.get(), &ready, 1, -1) < 0) continue;
    if (ready.data.fd == signals.get()) break;
    if (Status st = (*server)->dispatch(); !st.ok()) die(st.message());
    if (stop_after) {
      std::uint64_t faults = 0;
      for (const auto& s : (*server)->stats()) faults += s.faults;
      if (faults >= stop_after) {
        stop_after = 0;
        ::raise(SIGSTOP);
      }
    }
  }
  nlohmann::json all = nlohmann::json::array();
  for (const auto& s : (*server)->stats()) all.push_back(s.to_json());
  std::printf("%s\n", all.dump().c_str());
  return 0;
}
