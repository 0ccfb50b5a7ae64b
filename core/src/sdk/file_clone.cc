#include "fcvm/file_clone.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fcvm/atomic_file.h"
#include "fcvm/unique_fd.h"

namespace fcvm {
namespace {

// Copies [offset, end) from `in` to `out` at the same offsets.
Status copy_range(int in, int out, off_t offset, off_t end, const std::string& what) {
  bool use_copy_file_range = true;
  std::vector<char> buf;
  while (offset < end) {
    const size_t want = static_cast<size_t>(end - offset);
    ssize_t n;
    if (use_copy_file_range) {
      loff_t in_off = offset, out_off = offset;
      n = ::copy_file_range(in, &in_off, out, &out_off, want, 0);
      if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
        use_copy_file_range = false;  // this pair of files needs plain reads and writes
        continue;
      }
    } else {
      if (buf.empty()) buf.resize(1 << 20);
      n = ::pread(in, buf.data(), std::min(want, buf.size()), offset);
      for (ssize_t done = 0; n > 0 && done < n;) {
        ssize_t w = ::pwrite(out, buf.data() + done, static_cast<size_t>(n - done), offset + done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno_status("write " + what);
        done += w;
      }
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("copy " + what);
    if (n == 0) return error(Errc::io, "copy " + what + ": source shrank during the copy");
    offset += n;
  }
  return ok_status();
}

Status sparse_copy(int in, int out, off_t size, const std::string& what) {
  if (::ftruncate(out, size) != 0) return errno_status("size " + what);
  off_t offset = 0;
  while (offset < size) {
    off_t data = ::lseek(in, offset, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole remains
    if (data < 0 && errno == EINVAL)
      return copy_range(in, out, offset, size, what);  // no SEEK_DATA
    if (data < 0) return errno_status("seek " + what);
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0) return errno_status("seek " + what);
    FCVM_RETURN_IF_ERROR(copy_range(in, out, data, hole, what));
    offset = hole;
  }
  return ok_status();
}

}  // namespace

Status clone_file(const std::filesystem::path& from, const std::filesystem::path& to,
                  CloneMode mode, bool* reflinked) {
  if (reflinked != nullptr) *reflinked = false;
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) {
    return errno == ENOENT ? error(Errc::not_found, from.string() + ": no such file")
                           : errno_status("open " + from.string());
  }
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) return errno_status("stat " + from.string());
  if (!S_ISREG(st.st_mode))
    return error(Errc::invalid_argument, from.string() + " is not a regular file");
  struct stat existing {};
  if (mode == CloneMode::create_new && ::lstat(to.c_str(), &existing) == 0)
    return error(Errc::already_exists, to.string() + " already exists");

  const std::filesystem::path tmp =
      to.parent_path() / ("." + to.filename().string() + ".tmp." + std::to_string(::getpid()));
  UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777));
  if (!out) return errno_status("create " + tmp.string());
  auto fail = [&](Status st_) {
    out.reset();
    ::unlink(tmp.c_str());
    return st_;
  };

  const std::string what = from.string() + " to " + to.string();
  if (::ioctl(out.get(), FICLONE, in.get()) == 0) {
    if (reflinked != nullptr) *reflinked = true;
  } else if (errno == EOPNOTSUPP || errno == EXDEV || errno == EINVAL || errno == ENOTTY ||
             errno == ENOSYS) {
    if (Status copied = sparse_copy(in.get(), out.get(), st.st_size, what); !copied.ok()) {
      return fail(copied);
    }
  } else {
    return fail(errno_status("clone " + what));
  }
  if (::fsync(out.get()) != 0) return fail(errno_status("fsync " + tmp.string()));
  out.reset();
  if (mode == CloneMode::replace) {
    if (::rename(tmp.c_str(), to.c_str()) != 0) return fail(errno_status("rename to " + to.string()));
    return fsync_dir(to.parent_path());
  }
  // link(2) instead of rename(2): it fails rather than replace a `to` created meanwhile.
  if (::link(tmp.c_str(), to.c_str()) != 0) {
    Status st_ = errno == EEXIST ? error(Errc::already_exists, to.string() + " already exists")
                                 : errno_status("link " + to.string());
    ::unlink(tmp.c_str());
    return st_;
  }
  ::unlink(tmp.c_str());
  return fsync_dir(to.parent_path());
}

}  // namespace fcvm
