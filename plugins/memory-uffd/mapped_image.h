// MappedImage: a read-only shared mapping of a snapshot's memory image, the source of every
// UFFDIO_COPY. Read-only and MAP_SHARED: the server never writes it, and all clients share
// the image's page cache through it.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>

#include "fcvm/result.h"

namespace fcvm::uffd {

// Identity of the image's content: a record made for another file (or the same name
// rewritten) is stale.
struct ImageIdentity {
  std::uint64_t dev = 0, ino = 0, size = 0;
  std::int64_t mtime_ns = 0;
  friend bool operator==(const ImageIdentity&, const ImageIdentity&) = default;
};

class MappedImage {
 public:
  // Maps `path`. not_found when missing; invalid_argument when empty; io otherwise.
  static Result<MappedImage> open(const std::filesystem::path& path);

  MappedImage() = default;
  MappedImage(MappedImage&& o) noexcept;
  MappedImage& operator=(MappedImage&& o) noexcept;
  MappedImage(const MappedImage&) = delete;
  MappedImage& operator=(const MappedImage&) = delete;
  ~MappedImage();

  const std::uint8_t* data() const { return data_; }
  std::uint64_t size() const { return identity_.size; }
  const ImageIdentity& identity() const { return identity_; }

 private:
  const std::uint8_t* data_ = nullptr;
  ImageIdentity identity_;
};

}  // namespace fcvm::uffd
