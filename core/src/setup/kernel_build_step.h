// Running one step of a kernel build (make, tar) with its output logged and watched.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "fcvm/result.h"

namespace fcvm {

// Writes all of `data` to `fd`, retrying short writes.
Status write_all(int fd, const char* data, std::size_t size);

// Runs one build step. Its stdout and stderr (merged) are appended to `log_fd`; each output
// line goes to `on_line`, and `on_tick` runs about once a second while the step is quiet.
// A failure names the step, how it ended, the most telling line of its output and
// `failed_log`. Blocks until the step exits; no time bound (a kernel build takes minutes).
Status run_build_step(const std::string& what, const std::vector<std::string>& argv,
                      const std::filesystem::path& cwd, int log_fd,
                      const std::filesystem::path& failed_log,
                      const std::function<void(std::string_view)>& on_line = {},
                      const std::function<void()>& on_tick = {});

}  // namespace fcvm
