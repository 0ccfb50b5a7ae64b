#include "fcvm/plugin.h"

#include "fcvm/log.h"

namespace fcvm {

const char* to_string(PluginKind kind) noexcept {
  switch (kind) {
    case PluginKind::vmm: return "vmm";
    case PluginKind::network: return "network";
    case PluginKind::storage: return "storage";
    case PluginKind::memory: return "memory";
  }
  return "unknown";
}

std::optional<PluginKind> parse_plugin_kind(std::string_view text) noexcept {
  for (auto k : {PluginKind::vmm, PluginKind::network, PluginKind::storage, PluginKind::memory}) {
    if (text == to_string(k)) return k;
  }
  return std::nullopt;
}

const char* host_fingerprint() noexcept { return FCVM_BUILD_FINGERPRINT; }

const char* to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::trace: return "trace";
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warning: return "warning";
    case LogLevel::error: return "error";
  }
  return "info";
}

std::optional<LogLevel> parse_log_level(std::string_view text) noexcept {
  for (auto l : {LogLevel::trace, LogLevel::debug, LogLevel::info, LogLevel::warning,
                 LogLevel::error}) {
    if (text == to_string(l)) return l;
  }
  if (text == "warn") return LogLevel::warning;
  return std::nullopt;
}

namespace {
class NullLogger final : public Logger {
 public:
  void write(LogLevel, std::string_view) const override {}
  bool enabled(LogLevel) const override { return false; }
  std::shared_ptr<const Logger> child(std::string_view) const override { return null_logger(); }
};
}  // namespace

LoggerPtr null_logger() {
  static const LoggerPtr instance = std::make_shared<NullLogger>();
  return instance;
}

}  // namespace fcvm
