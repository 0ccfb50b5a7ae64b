#include "fcvm/temp_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <string>
#include <system_error>

namespace fcvm {

TempDir::TempDir(TempDir&& other) noexcept
    : path_(std::move(other.path_)), lock_(std::move(other.lock_)) {
  other.path_.clear();
}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    remove();
    path_ = std::move(other.path_);
    lock_ = std::move(other.lock_);
    other.path_.clear();
  }
  return *this;
}

TempDir::~TempDir() { remove(); }

Result<TempDir> TempDir::create(const std::filesystem::path& parent, std::string_view prefix) {
  std::string pattern = (parent / prefix).string() + "XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    return errno_status("create temp dir in " + parent.string());
  TempDir dir;
  dir.path_ = pattern;
  dir.lock_.reset(::open(dir.path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.lock_ || ::flock(dir.lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    return errno_status("lock temp dir " + dir.path_.string());  // `dir` removes it
  }
  return dir;
}

Result<TempDir> TempDir::create(std::string_view prefix) {
  std::error_code ec;
  const auto parent = std::filesystem::temp_directory_path(ec);
  if (ec) return error(Errc::io, "find the temp directory: " + ec.message() + "; set TMPDIR");
  return create(parent, prefix);
}

void TempDir::remove() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  path_.clear();
  lock_.reset();
}

void TempDir::remove_stale(const std::filesystem::path& parent, std::string_view prefix) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(parent, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    UniqueFd fd(::open(entry.path().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // in use, or not a dir
    std::error_code ignored;
    std::filesystem::remove_all(entry.path(), ignored);
  }
}

}  // namespace fcvm
