// Mem-file ownership: forks hardlink a snapshot's memory image (place_memory_image), and a
// shared image is replaced by a private copy before anyone writes it (the nlink guard of
// memory.h).
#include <sys/stat.h>
#include <unistd.h>

#include "fcvm/file_clone.h"
#include "fcvm/memory.h"
#include "fcvm/memory_image.h"

namespace fcvm {

const char* to_string(MemoryPlacement placement) noexcept {
  switch (placement) {
    case MemoryPlacement::hardlink: return "hardlink";
    case MemoryPlacement::reflink: return "reflink";
    case MemoryPlacement::copy: return "copy";
  }
  return "unknown";
}

Result<MemoryPlacement> place_memory_image(const std::filesystem::path& image,
                                           const std::filesystem::path& dest) {
  if (::link(image.c_str(), dest.c_str()) == 0) return MemoryPlacement::hardlink;
  const int err = errno;
  if (err == EEXIST) {
    return error(Errc::already_exists,
                 dest.string() + " already exists; remove it or pick a new fork dir");
  }
  if (err == ENOENT) return error(Errc::not_found, "memory image " + image.string() + " does not exist");
  if (err != EXDEV && err != EMLINK && err != EPERM) {
    return errno_status("hardlink " + image.string() + " to " + dest.string(), err);
  }
  bool reflinked = false;
  FCVM_RETURN_IF_ERROR(clone_file(image, dest, CloneMode::create_new, &reflinked)
                           .with_context("placing " + image.string() + " (" + std::strerror(err) +
                                         " for a hardlink): "));
  return reflinked ? MemoryPlacement::reflink : MemoryPlacement::copy;
}

Status make_private_before_write(const std::filesystem::path& mem_file) {
  struct stat st {};
  if (::lstat(mem_file.c_str(), &st) != 0) return errno_status("stat " + mem_file.string());
  if (!S_ISREG(st.st_mode)) {
    return error(Errc::invalid_argument, mem_file.string() + " is not a regular file");
  }
  if (st.st_nlink <= 1) return ok_status();
  // The copy is renamed over this name only: the other names keep the shared inode, and
  // on any failure this name too still points at it, unchanged.
  Status copied = clone_file(mem_file, mem_file, CloneMode::replace);
  if (copied.ok()) return copied;
  const std::string head = "cannot make " + mem_file.string() + " private before writing it (" +
                           std::to_string(st.st_nlink) + " names share it; it is unchanged): ";
  if (copied.message().find(std::strerror(ENOSPC)) != std::string::npos) {
    return error(copied.code(), head + "no space left on the filesystem of " +
                                    mem_file.parent_path().string() +
                                    "; free space or delete unused snapshots, then retry");
  }
  return copied.with_context(head);
}

}  // namespace fcvm
