// The command line `ps` shows for this process. A detached VM's process is a fork of the
// `fcvm podman run -d ...` that started it, so without this its /proc/PID/cmdline would
// show that command, `-e KEY=VALUE` values included, to every local user for the VM's life.
//
// Threading: call remember_process_args once at start, before any thread; the rest from
// one thread. Nothing here throws.
#pragma once

#include <string_view>

namespace fcvm {

// Notes where the kernel keeps this process's argv (main's argc/argv, untouched).
void remember_process_args(int argc, char** argv) noexcept;

// Overwrites the whole argv area with `title` (cut to fit), the rest zeroed, so that no
// byte of the original arguments remains readable in /proc/PID/cmdline. No-op before
// remember_process_args.
void set_process_title(std::string_view title) noexcept;

}  // namespace fcvm
