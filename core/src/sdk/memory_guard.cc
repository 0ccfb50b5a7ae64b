// The nlink guard of memory.h: a shared memory image is replaced by a private copy before
// anyone writes it.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fcvm/atomic_file.h"
#include "fcvm/memory.h"
#include "fcvm/unique_fd.h"

namespace fcvm {
namespace {

// Copies only the data extents of `in`, so holes stay holes.
Status sparse_copy(int in, int out, off_t size) {
  off_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(in, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      return errno_status("seek data");
    }
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0) return errno_status("seek hole");
    loff_t src = data, dst = data;
    while (src < hole) {
      ssize_t n = ::copy_file_range(in, &src, out, &dst, static_cast<size_t>(hole - src), 0);
      if (n < 0) return errno_status("copy_file_range");
      if (n == 0) break;
    }
    pos = hole;
  }
  if (::ftruncate(out, size) != 0) return errno_status("truncate");
  return ok_status();
}

}  // namespace

Status make_private_before_write(const std::filesystem::path& mem_file) {
  struct stat st {};
  if (::stat(mem_file.c_str(), &st) != 0) return errno_status("stat " + mem_file.string());
  if (st.st_nlink <= 1) return ok_status();

  UniqueFd in(::open(mem_file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return errno_status("open " + mem_file.string());
  const auto tmp = mem_file.parent_path() / ("." + mem_file.filename().string() + ".private." +
                                             std::to_string(::getpid()));
  UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777));
  if (!out) return errno_status("create " + tmp.string());
  Status copied = ::ioctl(out.get(), FICLONE, in.get()) == 0
                      ? ok_status()
                      : sparse_copy(in.get(), out.get(), st.st_size);
  if (copied.ok() && ::fsync(out.get()) != 0) copied = errno_status("fsync " + tmp.string());
  if (copied.ok() && ::rename(tmp.c_str(), mem_file.c_str()) != 0) {
    copied = errno_status("rename " + tmp.string());
  }
  if (!copied.ok()) {
    ::unlink(tmp.c_str());
    return copied.with_context("making " + mem_file.string() + " private: ");
  }
  return fsync_dir(mem_file.parent_path());
}

}  // namespace fcvm
