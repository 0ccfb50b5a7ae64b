#include "state/process_identity.h"

#include <unistd.h>

#include <charconv>
#include <string>

#include "fcvm/atomic_file.h"

namespace fcvm {
namespace {

Result<ProcStat> read_proc_stat(pid_t pid) {
  if (pid <= 0) return error(Errc::invalid_argument, "no process has pid " + std::to_string(pid));
  auto text = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!text.ok()) {
    // ENOENT and ESRCH (the process went away between open and read) both mean "gone".
    return error(Errc::not_found, "no process with pid " + std::to_string(pid));
  }
  return parse_proc_stat(*text);
}

}  // namespace

Result<ProcStat> parse_proc_stat(std::string_view text) {
  const auto bad = [&](const char* why) {
    return error(Errc::protocol, std::string("/proc stat line: ") + why);
  };
  const auto close = text.rfind(')');
  if (close == std::string_view::npos) return bad("no ')' after the command name");
  // After ") " come fields 3, 4, ...; field 22 is the 20th of them.
  std::string_view rest = text.substr(close + 1);
  ProcStat out;
  int field = 2;
  while (!rest.empty()) {
    const auto start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    const auto end = rest.find_first_of(" \n");
    const std::string_view token = rest.substr(0, end);
    ++field;
    if (field == 3) {
      if (token.size() != 1) return bad("field 3 (state) is not one character");
      out.state = token.front();
    } else if (field == 22) {
      const auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(),
                                             out.start_time);
      if (ec != std::errc() || ptr != token.data() + token.size()) {
        return bad("field 22 (starttime) is not a number");
      }
      return out;
    }
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end);
  }
  return bad("fewer than 22 fields");
}

Result<ProcessIdentity> ProcessIdentity::of(pid_t pid) {
  auto stat = read_proc_stat(pid);
  if (!stat.ok()) return stat.status();
  return ProcessIdentity{pid, stat->start_time};
}

ProcessIdentity ProcessIdentity::self() {
  // Our own /proc entry exists while we run; a failure here means /proc is not mounted,
  // and a record with start time 0 then simply never matches (it reads as dead).
  auto me = of(::getpid());
  return me.ok() ? *me : ProcessIdentity{::getpid(), 0};
}

bool ProcessIdentity::alive() const {
  if (pid <= 0) return false;
  auto stat = read_proc_stat(pid);
  if (!stat.ok()) return false;
  if (stat->state == 'Z' || stat->state == 'X' || stat->state == 'x') return false;
  return stat->start_time == start_time;
}

}  // namespace fcvm
