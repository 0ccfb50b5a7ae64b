#include "fcvm/file_clone.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fcvm/atomic_file.h"
#include "fcvm/unique_fd.h"

namespace fcvm {
namespace {

constexpr size_t kChunk = 1 << 20;  // bytes per read and per write
constexpr unsigned kBatch = 16;     // chunks submitted together, each a linked read + write

struct Range {
  off_t offset;
  off_t end;
};

// The data ranges of `in` (a file of `size` bytes); all of it when SEEK_DATA is unsupported.
Result<std::vector<Range>> data_ranges(int in, off_t size, const std::string& what) {
  std::vector<Range> ranges;
  for (off_t offset = 0; offset < size;) {
    const off_t data = ::lseek(in, offset, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole remains
    if (data < 0 && errno == EINVAL) return std::vector<Range>{{offset, size}};
    if (data < 0) return errno_status("seek " + what);
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0) return errno_status("seek " + what);
    hole = std::min(hole, size);  // the file must not grow meanwhile; copy what was asked
    ranges.push_back({data, hole});
    offset = hole;
  }
  return ranges;
}

Status write_all(int out, const char* buf, size_t len, off_t offset, const std::string& what) {
  for (size_t done = 0; done < len;) {
    const ssize_t w = ::pwrite(out, buf + done, len - done, offset + static_cast<off_t>(done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno_status("write " + what);
    done += static_cast<size_t>(w);
  }
  return ok_status();
}

Status shrank(const std::string& what) {
  return error(Errc::io, "copy " + what + ": the source shrank during the copy");
}

Status copy_with_pread(int in, int out, const std::vector<Range>& ranges, const std::string& what) {
  std::vector<char> buf(kChunk);
  for (const Range& r : ranges) {
    for (off_t offset = r.offset; offset < r.end;) {
      const size_t want = static_cast<size_t>(std::min<off_t>(r.end - offset, kChunk));
      const ssize_t n = ::pread(in, buf.data(), want, offset);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_status("read " + what);
      if (n == 0) return shrank(what);
      FCVM_RETURN_IF_ERROR(write_all(out, buf.data(), static_cast<size_t>(n), offset, what));
      offset += n;
    }
  }
  return ok_status();
}

// Batches of up to kBatch chunks: each chunk a read linked to the write of the same buffer,
// one submit per batch, then every completion reaped before the next batch.
Status copy_with_uring(io_uring& ring, int in, int out, const std::vector<Range>& ranges,
                       const std::string& what) {
  std::vector<char> pool(kBatch * kChunk);
  struct Chunk {
    off_t offset;
    unsigned len;
  };
  Chunk chunks[kBatch];
  size_t range = 0;
  off_t cursor = ranges.empty() ? 0 : ranges[0].offset;
  while (range < ranges.size()) {
    unsigned n = 0;
    for (; n < kBatch && range < ranges.size(); ++n) {
      const unsigned len = static_cast<unsigned>(std::min<off_t>(ranges[range].end - cursor, kChunk));
      chunks[n] = {cursor, len};
      char* buf = pool.data() + n * kChunk;
      io_uring_sqe* rd = io_uring_get_sqe(&ring);
      io_uring_prep_read(rd, in, buf, len, static_cast<__u64>(cursor));
      rd->flags |= IOSQE_IO_LINK;
      io_uring_sqe_set_data64(rd, n * 2);
      io_uring_sqe* wr = io_uring_get_sqe(&ring);
      io_uring_prep_write(wr, out, buf, len, static_cast<__u64>(cursor));
      io_uring_sqe_set_data64(wr, n * 2 + 1);
      cursor += len;
      if (cursor >= ranges[range].end && ++range < ranges.size()) cursor = ranges[range].offset;
    }
    int submitted = io_uring_submit(&ring);
    if (submitted < 0) return errno_status("submit " + what, -submitted);
    Status failure;
    for (unsigned i = 0; i < 2 * n; ++i) {
      io_uring_cqe* cqe = nullptr;
      int rc;
      while ((rc = io_uring_wait_cqe(&ring, &cqe)) == -EINTR) {
      }
      if (rc < 0) return errno_status("wait for " + what, -rc);
      const auto tag = io_uring_cqe_get_data64(cqe);
      const int res = cqe->res;
      io_uring_cqe_seen(&ring, cqe);
      if (!failure.ok()) continue;  // reap the rest of the batch, then report the first error
      const Chunk& c = chunks[tag / 2];
      if (tag % 2 == 0) {
        if (res < 0) failure = errno_status("read " + what, -res);
        else if (static_cast<unsigned>(res) < c.len) failure = shrank(what);
      } else if (res < 0) {
        failure = errno_status("write " + what, -res);
      } else if (static_cast<unsigned>(res) < c.len) {  // rare: finish it synchronously
        failure = write_all(out, pool.data() + (tag / 2) * kChunk + res, c.len - res, c.offset + res, what);
      }
    }
    FCVM_RETURN_IF_ERROR(failure);
  }
  return ok_status();
}

}  // namespace

Status copy_data_extents(int in, int out, const std::string& what) {
  struct stat st {};
  if (::fstat(in, &st) != 0) return errno_status("stat " + what);
  if (::ftruncate(out, st.st_size) != 0) return errno_status("size " + what);
  auto ranges = data_ranges(in, st.st_size, what);
  if (!ranges) return ranges.status();
  io_uring ring{};
  if (io_uring_queue_init(2 * kBatch, &ring, 0) != 0) {
    return copy_with_pread(in, out, *ranges, what);  // io_uring disabled or filtered here
  }
  Status copied = copy_with_uring(ring, in, out, *ranges, what);
  io_uring_queue_exit(&ring);
  return copied;
}

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
    if (Status copied = copy_data_extents(in.get(), out.get(), what); !copied.ok()) {
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
