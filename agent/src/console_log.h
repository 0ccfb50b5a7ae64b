// Diagnostics of the agent itself. As PID 1 they go to /dev/console (the VM's serial
// console, which the host keeps in a log file); before /dev exists, or when the agent runs
// as an ordinary process, they go to stderr. The user's output never goes here.
#pragma once

#include <string>
#include <string_view>

namespace fcvm::agent {

// Points the log at /dev/console. Call after devtmpfs is mounted; harmless if it fails.
void open_console_log();

// Writes one line, prefixed with "fc-agent: ".
void log_line(std::string_view message);

// strerror(err) as a std::string.
std::string errno_text(int err);

}  // namespace fcvm::agent
