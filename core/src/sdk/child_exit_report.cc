#include "fcvm/child_exit_report.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <string_view>

#include "fcvm/unique_fd.h"

namespace fcvm {
namespace {

// Enough for a few error lines; a chatty guest console must not make errors huge.
constexpr off_t kTailBytes = 4096;

}  // namespace

std::string log_tail(const LogSpan& span, std::size_t max_lines) {
  UniqueFd fd(::open(span.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  const off_t end = ::lseek(fd.get(), 0, SEEK_END);
  const off_t start = std::max<off_t>(span.from, end - kTailBytes);
  if (end <= start) return {};
  std::string text(static_cast<std::size_t>(end - start), '\0');
  const ssize_t n = ::pread(fd.get(), text.data(), text.size(), start);
  text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  std::vector<std::string_view> lines;
  const std::string_view all(text);
  for (std::size_t pos = 0; pos < all.size();) {
    std::size_t nl = all.find('\n', pos);
    if (nl == std::string_view::npos) nl = all.size();
    const std::string_view line = all.substr(pos, nl - pos);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) lines.push_back(line);
    pos = nl + 1;
  }
  std::string out;
  const std::size_t first = lines.size() > max_lines ? lines.size() - max_lines : 0;
  for (std::size_t i = first; i < lines.size(); ++i) {
    if (!out.empty()) out += " / ";
    out += lines[i];
  }
  return out;
}

ChildExitReport::ChildExitReport(std::string program, std::vector<LogSpan> logs)
    : program_(std::move(program)), logs_(std::move(logs)) {}

std::string ChildExitReport::describe(const ExitStatus& status) const {
  std::string out = program_ + " exited (" + status.describe() + ")";
  for (const auto& log : logs_) {
    const std::string tail = log_tail(log);
    if (tail.empty()) continue;
    out += ": " + tail;
    break;
  }
  return out;
}

Status ChildExitReport::check_running(ChildProcess& child) const {
  if (auto status = child.try_wait()) return error(Errc::unavailable, describe(*status));
  return ok_status();
}

Status ChildExitReport::explain(ChildProcess& child, Status failure,
                                std::chrono::milliseconds grace) const {
  if (failure.ok()) return failure;
  auto status = child.try_wait();
  if (!status && failure.code() == Errc::io) status = child.wait(grace);
  if (!status) return failure;
  return error(Errc::unavailable, describe(*status) + " (" + failure.message() + ")");
}

}  // namespace fcvm
