#include "supervise/capped_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace fcvm {
namespace {

UniqueFd open_append(const std::filesystem::path& path) {
  return UniqueFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
}

Status write_all(int fd, std::string_view bytes, const std::filesystem::path& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_status("write " + path.string());
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return ok_status();
}

}  // namespace

Result<CappedLog> CappedLog::open(const std::filesystem::path& path, std::uint64_t max_bytes) {
  UniqueFd fd = open_append(path);
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0) return errno_status("open " + path.string());
  return CappedLog(path, max_bytes, std::move(fd), static_cast<std::uint64_t>(st.st_size));
}

Status CappedLog::rotate() {
  const auto previous = path_.string() + ".1";
  if (::rename(path_.c_str(), previous.c_str()) != 0) {
    return errno_status("rotate " + path_.string() + " to " + previous);
  }
  UniqueFd fresh = open_append(path_);
  if (!fresh) return errno_status("open " + path_.string());
  fd_ = std::move(fresh);
  size_ = 0;
  return ok_status();
}

Status CappedLog::append(std::string_view bytes) {
  if (max_bytes_ > 0 && size_ > 0 && size_ + bytes.size() > max_bytes_) {
    FCVM_RETURN_IF_ERROR(rotate());
  }
  FCVM_RETURN_IF_ERROR(write_all(fd_.get(), bytes, path_));
  size_ += bytes.size();
  return ok_status();
}

Status cap_appended_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
  if (max_bytes == 0) return ok_status();
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return errno == ENOENT ? ok_status() : errno_status("open " + path.string());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_status("stat " + path.string());
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size <= max_bytes) return ok_status();
  const std::string marker = "[fcvm: this log passed " + std::to_string(max_bytes) +
                             " bytes; older lines were dropped]\n";
  const std::uint64_t keep = max_bytes / 2 > marker.size() ? max_bytes / 2 - marker.size() : 0;
  std::string tail(static_cast<std::size_t>(keep), '\0');
  const ssize_t n = ::pread(fd.get(), tail.data(), tail.size(), static_cast<off_t>(size - keep));
  if (n < 0) return errno_status("read " + path.string());
  tail.resize(static_cast<std::size_t>(n));
  if (::ftruncate(fd.get(), 0) != 0) return errno_status("truncate " + path.string());
  // O_APPEND is not set on our descriptor: write from the start explicitly.
  const std::string kept = marker + tail;
  if (::pwrite(fd.get(), kept.data(), kept.size(), 0) != static_cast<ssize_t>(kept.size())) {
    return errno_status("write " + path.string());
  }
  return ok_status();
}

}  // namespace fcvm
