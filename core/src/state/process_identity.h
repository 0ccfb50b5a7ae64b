// ProcessIdentity: a process named by PID *and* start time, so a recycled PID never
// passes for the process a state record was written by.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string_view>

#include "fcvm/result.h"

namespace fcvm {

struct ProcessIdentity {
  pid_t pid = 0;
  // Field 22 of /proc/<pid>/stat: clock ticks after boot at which the process started.
  std::uint64_t start_time = 0;

  // The identity of a running process (reads /proc/<pid>/stat). not_found when there is
  // no such process.
  static Result<ProcessIdentity> of(pid_t pid);
  // This process.
  static ProcessIdentity self();

  // True only if a process with this PID exists, is not a zombie, and started at
  // start_time. A PID of 0 or below is never alive. Reads /proc; no signals are sent, so it
  // works for processes of other users too.
  bool alive() const;

  friend bool operator==(const ProcessIdentity&, const ProcessIdentity&) = default;
};

// What /proc/<pid>/stat says about a process.
struct ProcStat {
  char state = '?';             // field 3: R, S, D, Z, X, ...
  std::uint64_t start_time = 0; // field 22
};

// Parses the content of /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the *last* ')'. Errors are protocol errors.
Result<ProcStat> parse_proc_stat(std::string_view text);

}  // namespace fcvm
