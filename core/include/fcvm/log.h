// The logging facade plugins and core log through.
//
// Core owns the sinks (Boost.Log); a plugin never configures logging, it only writes
// through the Logger it was given. Every line carries the logger's tag chain, e.g.
// "vm web1: qemu: QMP connected".
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fcvm/visibility.h"

namespace fcvm {

enum class LogLevel { trace = 0, debug, info, warning, error };

FCVM_SDK_API const char* to_string(LogLevel level) noexcept;
FCVM_SDK_API std::optional<LogLevel> parse_log_level(std::string_view text) noexcept;

class FCVM_SDK_API Logger {
 public:
  virtual ~Logger() = default;

  // Writes one line. Thread-safe; never throws; a message with newlines is kept whole.
  virtual void write(LogLevel level, std::string_view message) const = 0;

  // True when a line at `level` would be written: lets callers skip building costly lines.
  // Thread-safe.
  virtual bool enabled(LogLevel level) const = 0;

  // A logger whose lines carry this logger's tags followed by `tag`. The child shares the
  // sinks and level; it may outlive its parent. Thread-safe.
  virtual std::shared_ptr<const Logger> child(std::string_view tag) const = 0;

  void trace(std::string_view m) const { write(LogLevel::trace, m); }
  void debug(std::string_view m) const { write(LogLevel::debug, m); }
  void info(std::string_view m) const { write(LogLevel::info, m); }
  void warn(std::string_view m) const { write(LogLevel::warning, m); }
  void error(std::string_view m) const { write(LogLevel::error, m); }
};

using LoggerPtr = std::shared_ptr<const Logger>;

// A logger that drops everything: for tests and for callers that were given none.
FCVM_SDK_API LoggerPtr null_logger();

}  // namespace fcvm
