// The guest's processes as `podman top` shows a container's, read from /proc: what
// `fcvm top` prints. The host runs `fc-agent ps` in the guest through the agent's exec (as
// /proc/1/exe, the agent's own binary), so it works in every image, with or without a ps.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace fcvm::agent {

struct ProcessRow {
  std::string user;        // name from the root's /etc/passwd, else the uid
  int pid = 0;
  int ppid = 0;
  double cpu_percent = 0;  // CPU time over the time since it started, as podman's %CPU
  double elapsed_s = 0;    // since it started
  std::string tty;         // "pts/0", "ttyS0", or "?"
  double cpu_s = 0;        // user + system time
  std::string command;     // its argv, spaces between
};

// Every user-space process under `proc` except `self`, by PID. Kernel threads (no command
// line) are left out; a process that ends while being read is skipped.
std::vector<ProcessRow> read_process_table(const std::filesystem::path& proc, const std::filesystem::path& passwd,
                                           int self);

// podman top's columns: USER PID PPID %CPU ELAPSED TTY TIME COMMAND, one row per line.
std::string format_process_table(const std::vector<ProcessRow>& rows);

}  // namespace fcvm::agent
