#include "process_table.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

namespace fcvm::agent {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::map<unsigned, std::string> user_names(const fs::path& passwd) {
  std::map<unsigned, std::string> out;
  std::ifstream in(passwd);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream fields(line);
    for (std::string part; std::getline(fields, part, ':');) f.push_back(part);
    if (f.size() < 3) continue;
    try {
      out.emplace(static_cast<unsigned>(std::stoul(f[2])), f[0]);
    } catch (const std::exception&) {
    }
  }
  return out;
}

// tty_nr of /proc/PID/stat as a device name.
std::string tty_name(unsigned long nr) {
  if (nr == 0) return "?";
  const unsigned major = (nr >> 8) & 0xfff;
  const unsigned minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
  if (major >= 136 && major <= 143) return "pts/" + std::to_string((major - 136) * 256 + minor);
  if (major == 4 && minor >= 64) return "ttyS" + std::to_string(minor - 64);
  if (major == 4) return "tty" + std::to_string(minor);
  return "?";
}

// A duration as Go prints one ("3.5s", "2m5s", "1h0m2s"), as podman top's columns do.
std::string go_duration(double seconds) {
  if (seconds < 0) seconds = 0;
  const long whole = static_cast<long>(seconds);
  const long h = whole / 3600, m = (whole % 3600) / 60;
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.3f", seconds - static_cast<double>(h * 3600 + m * 60));
  std::string s = secs;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  std::string out;
  if (h > 0) out += std::to_string(h) + "h";
  if (h > 0 || m > 0) out += std::to_string(m) + "m";
  return out + s + "s";
}

}  // namespace

std::vector<ProcessRow> read_process_table(const fs::path& proc, const fs::path& passwd, int self) {
  const auto users = user_names(passwd);
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  double uptime = 0;
  std::istringstream(read_file(proc / "uptime")) >> uptime;
  std::vector<ProcessRow> rows;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(proc, ec)) {
    const std::string name = entry.path().filename();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    ProcessRow row;
    row.pid = std::stoi(name);
    if (row.pid == self) continue;
    std::string cmdline = read_file(entry.path() / "cmdline");
    if (cmdline.empty()) continue;  // a kernel thread, or gone
    if (cmdline.back() == '\0') cmdline.pop_back();
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    row.command = cmdline;
    const std::string stat = read_file(entry.path() / "stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    // Fields from 3 (state) on: ppid is 4, tty_nr 7, utime 14, stime 15, starttime 22.
    std::istringstream f(stat.substr(close + 2));
    std::vector<std::string> fields;
    for (std::string v; f >> v;) fields.push_back(v);
    if (fields.size() < 20) continue;
    row.ppid = std::stoi(fields[1]);
    row.tty = tty_name(std::stoul(fields[4]));
    row.cpu_s = static_cast<double>(std::stoull(fields[11]) + std::stoull(fields[12])) / ticks;
    row.elapsed_s = uptime - static_cast<double>(std::stoull(fields[19])) / ticks;
    row.cpu_percent = row.elapsed_s > 0 ? 100.0 * row.cpu_s / row.elapsed_s : 0;
    unsigned uid = 0;
    std::istringstream status(read_file(entry.path() / "status"));
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("Uid:", 0) == 0) std::istringstream(line.substr(4)) >> uid;
    }
    const auto user = users.find(uid);
    row.user = user != users.end() ? user->second : std::to_string(uid);
    rows.push_back(std::move(row));
  }
  std::sort(rows.begin(), rows.end(), [](const ProcessRow& a, const ProcessRow& b) { return a.pid < b.pid; });
  return rows;
}

std::string format_process_table(const std::vector<ProcessRow>& rows) {
  std::vector<std::vector<std::string>> cells = {{"USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"}};
  for (const auto& r : rows) {
    char cpu[32];
    std::snprintf(cpu, sizeof cpu, "%.3f", r.cpu_percent);
    cells.push_back({r.user, std::to_string(r.pid), std::to_string(r.ppid), cpu, go_duration(r.elapsed_s), r.tty,
                     go_duration(r.cpu_s), r.command});
  }
  std::vector<size_t> width(cells.front().size(), 0);
  for (const auto& row : cells) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : cells) {
    for (size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) out += std::string(width[i] - row[i].size() + 3, ' ');
    }
    out += "\n";
  }
  return out;
}

}  // namespace fcvm::agent
