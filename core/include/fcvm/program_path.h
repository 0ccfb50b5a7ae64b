// Finding an executable the way a shell does, for the tools fcvm and its plugins run.
#pragma once

#include <filesystem>
#include <string_view>

#include "fcvm/visibility.h"

namespace fcvm {

enum class ProgramSearch {
  path,           // $PATH only
  path_and_sbin,  // $PATH, then /usr/local/sbin:/usr/sbin:/sbin (root's tools, such as
                  // mkfs.ext4, are often missing from a user's PATH)
};

// The first regular, executable file called `name` in the search directories, or an empty
// path. A name holding '/' is returned as is when it names such a file. An empty PATH
// entry means the current directory; an unset PATH means
// "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin". Thread-safe (reads the
// environment); never throws.
FCVM_SDK_API std::filesystem::path find_program(std::string_view name,
                                                ProgramSearch search = ProgramSearch::path);

}  // namespace fcvm
