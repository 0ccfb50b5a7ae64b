// ChildExitReport: how the exit of a long-running child (a VMM) reads in an error, and how a
// failed request to that child is explained once the child is gone.
//
// A VMM that dies mid-request shows up first as a broken socket ("connection reset"), which
// says nothing useful. This type turns it into "QEMU exited (exit code 1): <last lines of its
// log> (<the request's error>)", quoting only what this child wrote (each log is read from
// the byte offset where the child's output began).
//
// Threading: const methods only read files; explain() and check_running() reap the child
// through the ChildProcess they are given, so they follow that object's one-thread rule.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "fcvm/child_process.h"
#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

// A log file and the byte offset where the child's own output in it starts.
struct LogSpan {
  std::filesystem::path path;
  off_t from = 0;
};

// The last `max_lines` lines of `span` that are not blank, joined with " / "; only the last
// 4 KiB are read. Empty when the file is missing or holds nothing past `from`.
FCVM_SDK_API std::string log_tail(const LogSpan& span, std::size_t max_lines = 3);

class FCVM_SDK_API ChildExitReport {
 public:
  // `program` names the child in messages ("QEMU"). `logs` are tried in order: the first
  // with a non-empty tail is quoted.
  ChildExitReport(std::string program, std::vector<LogSpan> logs);

  // "QEMU exited (exit code 1): <tail>" (no ": <tail>" when every log is empty).
  std::string describe(const ExitStatus& status) const;

  // ok while `child` runs; once it has exited, unavailable with describe()'s text. For the
  // check before a request, so a dead child is not reported as a socket error.
  Status check_running(ChildProcess& child) const;

  // `failure` of a request to `child`, explained: when the child has exited, unavailable
  // "<describe()> (<failure's message>)"; otherwise `failure` unchanged (ok stays ok). An io
  // failure (closed socket) usually means the child is exiting, so for one this waits up
  // to `grace` for the exit before it decides.
  Status explain(ChildProcess& child, Status failure,
                 std::chrono::milliseconds grace = std::chrono::milliseconds(200)) const;

 private:
  std::string program_;
  std::vector<LogSpan> logs_;
};

}  // namespace fcvm
