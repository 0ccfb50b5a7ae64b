#include "mapped_image.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <utility>

#include "fcvm/unique_fd.h"

namespace fcvm::uffd {

Result<MappedImage> MappedImage::open(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) {
      return error(Errc::not_found, "memory image " + path.string() +
                                        " does not exist; was the snapshot deleted?");
    }
    return errno_status("open memory image " + path.string());
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_status("stat " + path.string());
  if (st.st_size == 0) {
    return error(Errc::invalid_argument, "memory image " + path.string() + " is empty");
  }
  void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return errno_status("mmap " + path.string());
  MappedImage image;
  image.data_ = static_cast<const std::uint8_t*>(p);
  image.identity_ = {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                     static_cast<std::uint64_t>(st.st_size),
                     std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec};
  return image;
}

MappedImage::MappedImage(MappedImage&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), identity_(o.identity_) {}

MappedImage& MappedImage::operator=(MappedImage&& o) noexcept {
  if (this != &o) {
    this->~MappedImage();
    data_ = std::exchange(o.data_, nullptr);
    identity_ = o.identity_;
  }
  return *this;
}

MappedImage::~MappedImage() {
  if (data_) ::munmap(const_cast<std::uint8_t*>(data_), identity_.size);
  data_ = nullptr;
}

}  // namespace fcvm::uffd
