#include "engine/vm_stats.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "engine/vm_accounting.h"

namespace fcvm {
namespace {

// "rx_bytes tx_bytes" of interface `name` in /proc/PID/net/dev (the process's netns).
std::optional<std::pair<std::uint64_t, std::uint64_t>> interface_bytes(pid_t pid, const std::string& name) {
  std::ifstream dev("/proc/" + std::to_string(pid) + "/net/dev");
  std::string line;
  while (std::getline(dev, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto first = line.find_first_not_of(' ');
    if (line.substr(first, colon - first) != name) continue;
    std::istringstream fields(line.substr(colon + 1));
    std::uint64_t rx = 0, skip = 0, tx = 0;
    fields >> rx;
    for (int i = 0; i < 7; ++i) fields >> skip;  // rx packets..multicast
    fields >> tx;
    if (!fields) return std::nullopt;
    return std::pair{rx, tx};
  }
  return std::nullopt;
}

// read_bytes and write_bytes of /proc/PID/io: what reached the storage layer.
std::pair<std::uint64_t, std::uint64_t> storage_bytes(pid_t pid) {
  std::ifstream io("/proc/" + std::to_string(pid) + "/io");
  std::string key;
  std::uint64_t value = 0, read = 0, written = 0;
  while (io >> key >> value) {
    if (key == "read_bytes:") read = value;
    if (key == "write_bytes:") written = value;
  }
  return {read, written};
}

}  // namespace

nlohmann::json to_json(const VmStats& s) {
  return {{"id", s.id},
          {"name", s.name},
          {"cpu_percent", s.cpu_percent},
          {"pss_bytes", s.pss_bytes ? nlohmann::json(*s.pss_bytes) : nlohmann::json(nullptr)},
          {"memory_limit_bytes", s.memory_limit_bytes},
          {"net_input_bytes", s.net_input_bytes},
          {"net_output_bytes", s.net_output_bytes},
          {"block_read_bytes", s.block_read_bytes},
          {"block_write_bytes", s.block_write_bytes},
          {"pids", s.pids ? nlohmann::json(*s.pids) : nlohmann::json(nullptr)}};
}

std::optional<VmmSample> sample_vmm(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 2));
  std::string skip;
  for (int field = 3; field < 14; ++field) fields >> skip;
  std::uint64_t utime = 0, stime = 0;
  fields >> utime >> stime;
  if (!fields) return std::nullopt;
  return VmmSample{utime + stime, std::chrono::steady_clock::now()};
}

Result<VmStats> measure_vm(const VmRecord& record, const VmmSample& before) {
  if (!record.vmm || !record.vmm->alive()) {
    return error(Errc::not_found, record.name + " has no running VMM (not running, or still starting)");
  }
  const pid_t pid = record.vmm->pid;
  VmStats out;
  out.id = record.id;
  out.name = record.name;
  if (auto now = sample_vmm(pid)) {
    const double seconds = std::chrono::duration<double>(now->at - before.at).count();
    if (seconds > 0 && now->cpu_ticks >= before.cpu_ticks) {
      out.cpu_percent = 100.0 * static_cast<double>(now->cpu_ticks - before.cpu_ticks) /
                        static_cast<double>(::sysconf(_SC_CLK_TCK)) / seconds;
    }
  }
  if (auto pss = process_pss(pid)) out.pss_bytes = (*pss)["pss"].get<std::uint64_t>();
  const auto machine = record.extra.find("machine");
  if (machine != record.extra.end() && machine->is_object() && machine->contains("memory_mib") &&
      (*machine)["memory_mib"].is_number_unsigned()) {
    out.memory_limit_bytes = (*machine)["memory_mib"].get<std::uint64_t>() << 20;
  }
  // The tap's receive is what the guest sent, and its transmit what the guest received.
  if (record.network && !record.network->tap.empty()) {
    if (auto bytes = interface_bytes(pid, record.network->tap)) {
      out.net_output_bytes = bytes->first;
      out.net_input_bytes = bytes->second;
    }
  }
  std::tie(out.block_read_bytes, out.block_write_bytes) = storage_bytes(pid);
  return out;
}

}  // namespace fcvm
