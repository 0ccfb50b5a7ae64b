// Core's logging: Boost.Log behind the SDK's fcvm::Logger facade.
//
// One sink writes lines to stderr:  "fcvm: warning: vm web1: qemu: QMP connected"
// (program, level, the logger's tag chain, message). The level word is coloured only when
// the stream is a terminal and NO_COLOR is unset. Everything here is thread-safe; loggers
// may be created, copied and written from any thread, before or after init_logging.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

#include "fcvm/log.h"

namespace fcvm {

// Installs the stderr sink (first call) and sets the level filter (every call). Lines below
// `level` are dropped. Loggers made before the call obey the new level.
void init_logging(LogLevel level);

// The same, but the sink now writes to `stream` (instead of stderr or the previous stream),
// with colour forced on or off. `stream` must outlive its use: point the sink elsewhere
// before destroying it. For tests, and for callers that log to a file.
void init_logging(LogLevel level, std::ostream& stream, bool colour);

// The untagged root logger. Usable before init_logging (the sink is then installed with
// the default level, warning).
LoggerPtr root_logger();

// The current level filter.
LogLevel current_log_level();

// `text` made safe for a terminal: control characters other than newline and tab (C0, DEL
// and UTF-8 encoded C1) become "\xNN", so text from a guest cannot move
// the cursor, retitle the window or hide what precedes it. Every log line and every error
// fcvm prints passes through this.
std::string escape_control_chars(std::string_view text);

}  // namespace fcvm
