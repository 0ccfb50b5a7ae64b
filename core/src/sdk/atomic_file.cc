#include "fcvm/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <random>

#include "fcvm/unique_fd.h"

namespace fcvm {

Status fsync_dir(const std::filesystem::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno_status("open " + dir.string());
  if (::fsync(fd.get()) != 0) return errno_status("fsync " + dir.string());
  return ok_status();
}

Status write_file_atomic(const std::filesystem::path& path, std::string_view data, unsigned mode) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  const auto tmp = path.parent_path() /
                   ("." + path.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
                    std::to_string(rng() % 1000000));
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd) return errno_status("create " + tmp.string());
  auto fail = [&](const std::string& what) {
    Status st = errno_status(what + " " + tmp.string());
    ::unlink(tmp.c_str());
    return st;
  };
  for (size_t done = 0; done < data.size();) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fchmod(fd.get(), mode) != 0) return fail("chmod");
  if (::fsync(fd.get()) != 0) return fail("fsync");
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename to " + path.string() + " from");
  return fsync_dir(path.parent_path().empty() ? "." : path.parent_path());
}

Result<std::string> read_file(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return errno == ENOENT ? error(Errc::not_found, path.string() + ": no such file")
                           : errno_status("open " + path.string());
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("read " + path.string());
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace fcvm
