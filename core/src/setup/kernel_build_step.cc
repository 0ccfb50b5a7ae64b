#include "setup/kernel_build_step.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <deque>

#include "fcvm/child_process.h"
#include "fcvm/unique_fd.h"

namespace fcvm {

namespace fs = std::filesystem;

Status write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("write");
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return ok_status();
}

namespace {

// The environment every build step runs with: a plain C locale for parsing, and settings
// that keep a caller's environment (ARCH, MAKEFLAGS from an outer make, ...) out.
std::vector<std::string> build_environment() {
  return {"LC_ALL=C",           "ARCH=x86",           "CROSS_COMPILE=",    "MAKEFLAGS=",
          "MAKELEVEL=",         "KCONFIG_CONFIG=.config", "KBUILD_BUILD_USER=fcvm",
          "KBUILD_BUILD_HOST=fcvm"};
}

// The most telling line of a failed step's output: the last compiler-style "error:" line,
// else the last other line mentioning an error (make's own "*** [...] Error 2" lines say
// only that something failed), else the last non-empty line.
std::string telling_line(const std::deque<std::string>& tail) {
  for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
    if (it->find("error:") != std::string::npos) return *it;
  }
  for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
    if (it->starts_with("make: ***") || (it->starts_with("make[") && it->find("***") != std::string::npos)) {
      continue;
    }
    std::string lower = *it;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower.find("error") != std::string::npos) return *it;
  }
  for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
    if (!it->empty()) return *it;
  }
  return "no output";
}

}  // namespace

Status run_build_step(const std::string& what, const std::vector<std::string>& argv,
                      const fs::path& cwd, int log_fd, const fs::path& failed_log,
                      const std::function<void(std::string_view)>& on_line,
                      const std::function<void()>& on_tick) {
  const std::string header = "$ " + [&] {
    std::string joined;
    for (const auto& a : argv) joined += (joined.empty() ? "" : " ") + a;
    return joined;
  }() + "\n";
  (void)write_all(log_fd, header.data(), header.size());

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errno_status(what + ": pipe");
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);

  SpawnOptions options;
  options.argv = argv;
  options.cwd = cwd;
  options.env_add = build_environment();
  options.stdout_fd = write_end.get();
  options.stderr_fd = write_end.get();
  auto child = ChildProcess::spawn(options);
  write_end.reset();  // the child holds the only write end now: EOF when it is done
  if (!child) return child.status().with_context(what + ": ");

  std::deque<std::string> tail;
  std::string pending;
  std::array<char, 65536> buf;
  Status log_status;
  auto take_line = [&](std::string line) {
    if (on_line) on_line(line);
    tail.push_back(std::move(line));
    if (tail.size() > 40) tail.pop_front();
  };
  while (true) {
    pollfd pfd{read_end.get(), POLLIN, 0};
    const int ready = ::poll(&pfd, 1, 1000);
    if (ready < 0 && errno != EINTR) return errno_status(what + ": poll");
    if (ready <= 0) {
      if (on_tick) on_tick();
      continue;
    }
    const ssize_t n = ::read(read_end.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return errno_status(what + ": read output");
    }
    if (n == 0) break;
    if (log_status.ok()) log_status = write_all(log_fd, buf.data(), static_cast<std::size_t>(n));
    pending.append(buf.data(), static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n', start)) {
      take_line(pending.substr(start, nl - start));
      start = nl + 1;
    }
    pending.erase(0, start);
  }
  if (!pending.empty()) take_line(std::move(pending));

  const auto exit = child->wait();
  if (!exit) return error(Errc::internal, what + ": child did not exit after closing its output");
  if (!exit->success()) {
    const std::string how = exit->signal ? "killed by signal " + std::to_string(exit->signal)
                                         : "exit code " + std::to_string(exit->code);
    return error(Errc::io, what + " failed (" + how + "): " + telling_line(tail) +
                               " (full log: " + failed_log.string() + ")");
  }
  if (!log_status.ok()) return log_status.with_context(what + ": build log: ");
  return ok_status();
}

}  // namespace fcvm
