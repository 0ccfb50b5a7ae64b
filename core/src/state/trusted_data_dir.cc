#include "state/trusted_data_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace fcvm {
namespace {

namespace fs = std::filesystem;

std::string octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

Status check_dir(const fs::path& dir, bool follow) {
  struct stat st {};
  if ((follow ? ::stat(dir.c_str(), &st) : ::lstat(dir.c_str(), &st)) != 0) {
    const int err = errno;
    return err == ENOENT ? ok_status() : errno_status("stat " + dir.string(), err);
  }
  if (!S_ISDIR(st.st_mode)) {
    return error(Errc::unavailable, dir.string() + " is not a directory (a symlink or a file planted in the data "
                                                   "dir?); refusing to act on it: remove it, or pass --data-dir");
  }
  if (st.st_uid != ::geteuid()) {
    return error(Errc::unavailable, dir.string() + " belongs to uid " + std::to_string(st.st_uid) + ", not to you (uid " +
                                        std::to_string(::geteuid()) +
                                        "): refusing to delete what its records name; run fcvm as that user, or "
                                        "pass --data-dir with a dir of your own");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return error(Errc::unavailable, dir.string() + " is writable by others (mode " + octal(st.st_mode) +
                                        "): refusing to delete what its records name; chmod go-w " + dir.string());
  }
  return ok_status();
}

}  // namespace

Status check_trusted_data_dir(const fs::path& data_dir) {
  FCVM_RETURN_IF_ERROR(check_dir(data_dir, true));  // the data dir itself may be a symlink: the caller chose it
  for (const char* sub : {"state", "vms", "snapshots", "images"}) {
    FCVM_RETURN_IF_ERROR(check_dir(data_dir / sub, false));
  }
  return ok_status();
}

}  // namespace fcvm
