// The nlink guard of memory.h: a shared memory image is replaced by a private copy before
// anyone writes it.
#include <sys/stat.h>

#include "fcvm/file_clone.h"
#include "fcvm/memory.h"

namespace fcvm {

Status make_private_before_write(const std::filesystem::path& mem_file) {
  struct stat st {};
  if (::stat(mem_file.c_str(), &st) != 0) return errno_status("stat " + mem_file.string());
  if (st.st_nlink <= 1) return ok_status();
  // The copy is renamed over this name only: the other names keep the shared inode.
  return clone_file(mem_file, mem_file, CloneMode::replace)
      .with_context("making " + mem_file.string() + " private: ");
}

}  // namespace fcvm
