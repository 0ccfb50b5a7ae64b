#include "fcvm/loop_device.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <system_error>

namespace fcvm {
namespace {

// Binds `file_fd` to the open loop device `dev`. Returns errno (0 on success).
int configure(int dev, int file_fd, const std::filesystem::path& file, bool read_only) {
  loop_info64 info{};
  info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0);
  const std::string name = file.string();
  name.copy(reinterpret_cast<char*>(info.lo_file_name), LO_NAME_SIZE - 1);
#ifdef LOOP_CONFIGURE
  loop_config config{};
  config.fd = static_cast<__u32>(file_fd);
  config.info = info;
  if (::ioctl(dev, LOOP_CONFIGURE, &config) == 0) return 0;
  if (errno != EINVAL && errno != ENOTTY) return errno;
#endif
  // Kernels before 5.8: two steps, with a window where the device has no flags yet.
  if (::ioctl(dev, LOOP_SET_FD, file_fd) != 0) return errno;
  if (::ioctl(dev, LOOP_SET_STATUS64, &info) != 0) {
    const int err = errno;
    ::ioctl(dev, LOOP_CLR_FD, 0);
    return err;
  }
  return 0;
}

}  // namespace

LoopDevice& LoopDevice::operator=(LoopDevice&& other) noexcept {
  if (this != &other) {
    (void)detach();
    device_ = std::move(other.device_);
    fd_ = std::move(other.fd_);
  }
  return *this;
}

LoopDevice::~LoopDevice() { (void)detach(); }

Result<LoopDevice> LoopDevice::attach(const std::filesystem::path& file, bool read_only) {
  const int mode = read_only ? O_RDONLY : O_RDWR;
  UniqueFd backing(::open(file.c_str(), mode | O_CLOEXEC));
  if (!backing) return errno_status("open " + file.string());
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) {
    if (errno == EACCES || errno == EPERM)
      return error(Errc::unavailable, "open /dev/loop-control: permission denied; run as root");
    return errno_status("open /dev/loop-control (is the loop module loaded?)");
  }
  // Loop devices are shared by the whole host: between GET_FREE and configuring it, another
  // process may claim the free device (EBUSY) or remove it (ENXIO, ENOENT). Ask again.
  for (int attempt = 0; attempt < 32; ++attempt) {
    const int index = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (index < 0) return errno_status("find a free loop device");
    std::filesystem::path device = "/dev/loop" + std::to_string(index);
    UniqueFd dev(::open(device.c_str(), mode | O_CLOEXEC));
    if (!dev) {
      if (errno == ENXIO || errno == ENOENT) continue;
      return errno_status("open " + device.string());
    }
    const int err = configure(dev.get(), backing.get(), file, read_only);
    if (err == 0) return LoopDevice(std::move(device), std::move(dev));
    if (err != EBUSY) return errno_status("attach " + file.string() + " to " + device.string(), err);
  }
  return error(Errc::io, "attach " + file.string() + ": every free loop device was taken first");
}

Status LoopDevice::detach() {
  if (!fd_) return ok_status();
  // ENXIO: already detached. A device still in use keeps working and goes at its last
  // close, thanks to autoclear.
  if (::ioctl(fd_.get(), LOOP_CLR_FD, 0) != 0 && errno != ENXIO && errno != EBUSY) {
    return errno_status("detach " + device_.string());
  }
  fd_.reset();
  return ok_status();
}

void LoopDevice::release() noexcept { fd_.reset(); }

std::vector<std::filesystem::path> loop_devices_backed_by(const std::filesystem::path& file) {
  std::vector<std::filesystem::path> found;
  std::error_code ec;
  const auto wanted = std::filesystem::weakly_canonical(file, ec);
  for (const auto& entry : std::filesystem::directory_iterator("/sys/block", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("loop", 0) != 0) continue;
    std::ifstream in(entry.path() / "loop" / "backing_file");
    std::string backing;
    if (!std::getline(in, backing)) continue;
    if (backing == wanted.string() || backing == file.string()) found.push_back("/dev/" + name);
  }
  return found;
}

}  // namespace fcvm
