#include "memory_image_copy.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "fcvm/atomic_file.h"
#include "fcvm/unique_fd.h"

namespace fcvm::qemu {
namespace {

Status copy_range(int in, int out, off_t start, off_t end, const std::string& what) {
  off_t in_off = start, out_off = start;
  while (in_off < end) {
    ssize_t n = ::copy_file_range(in, &in_off, out, &out_off, static_cast<size_t>(end - in_off), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) {
      // Fall back to read/write for file systems copy_file_range refuses.
      char buf[1 << 16];
      while (in_off < end) {
        size_t want = static_cast<size_t>(std::min<off_t>(end - in_off, sizeof buf));
        ssize_t r = ::pread(in, buf, want, in_off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r < 0 ? errno_status("read " + what) : error(Errc::io, what + " shrank while copying");
        ssize_t done = 0;
        while (done < r) {
          ssize_t w = ::pwrite(out, buf + done, static_cast<size_t>(r - done), out_off + done);
          if (w < 0 && errno == EINTR) continue;
          if (w < 0) return errno_status("write copy of " + what);
          done += w;
        }
        in_off += r;
        out_off += r;
      }
      return ok_status();
    }
    if (n < 0) return errno_status("copy " + what);
    if (n == 0) return error(Errc::io, what + " shrank while copying");
  }
  return ok_status();
}

Status sparse_copy(int in, int out, off_t size, const std::string& what) {
  if (::ftruncate(out, size) != 0) return errno_status("truncate copy of " + what);
  off_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(in, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole remains
    if (data < 0) return copy_range(in, out, pos, size, what);  // no SEEK_DATA: copy all
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0) hole = size;
    FCVM_RETURN_IF_ERROR(copy_range(in, out, data, std::min(hole, size), what));
    pos = hole;
  }
  return ok_status();
}

}  // namespace

Status copy_memory_image(const std::filesystem::path& from, const std::filesystem::path& to) {
  const std::string what = from.string();
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return errno_status("open " + what);
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) return errno_status("stat " + what);

  const std::filesystem::path tmp = to.string() + ".tmp";
  UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out) return errno_status("create " + tmp.string());
  auto fail = [&tmp](Status failure) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    return failure;
  };
  if (::ioctl(out.get(), FICLONE, in.get()) != 0) {
    Status copied = sparse_copy(in.get(), out.get(), st.st_size, what);
    if (!copied.ok()) return fail(copied);
  }
  if (::fsync(out.get()) != 0) return fail(errno_status("fsync " + tmp.string()));
  out.reset();
  if (::rename(tmp.c_str(), to.c_str()) != 0) return fail(errno_status("rename " + tmp.string()));
  return fsync_dir(to.parent_path().empty() ? "." : to.parent_path());
}

}  // namespace fcvm::qemu
