#include "firecracker_client.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "fcvm/unix_socket.h"

namespace fcvm::uffd::testing {

Result<UniqueFd> create_userfaultfd() {
  UniqueFd uffd;
  UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  if (dev) uffd.reset(::ioctl(dev.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK));
  if (!uffd) uffd.reset(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!uffd) {
    return error(Errc::unavailable, std::string("userfaultfd: ") + std::strerror(errno) +
                                        "; needs root, /dev/userfaultfd access or "
                                        "vm.unprivileged_userfaultfd=1");
  }
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_EVENT_REMOVE;
  if (::ioctl(uffd.get(), UFFDIO_API, &api) != 0) return errno_status("UFFDIO_API");
  return uffd;
}

Result<FirecrackerClient> FirecrackerClient::create(const ClientLayout& layout) {
  const std::uint64_t page = std::uint64_t(::sysconf(_SC_PAGESIZE));
  if (layout.size == 0 || layout.size % (page * std::uint64_t(layout.regions)) != 0) {
    return error(Errc::invalid_argument, "size must be a multiple of regions * page size");
  }
  auto uffd = create_userfaultfd();
  if (!uffd) return uffd.status();
  FirecrackerClient c;
  c.layout_ = layout;
  void* p = ::mmap(nullptr, layout.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return errno_status("mmap guest memory");
  c.memory_ = static_cast<std::uint8_t*>(p);
  c.uffd_ = std::move(*uffd);
  const std::uint64_t region = layout.size / std::uint64_t(layout.regions);
  for (int i = 0; i < layout.regions; ++i) {
    uffdio_register reg{};
    reg.range.start = reinterpret_cast<std::uint64_t>(c.memory_) + std::uint64_t(i) * region;
    reg.range.len = region;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(c.uffd_.get(), UFFDIO_REGISTER, &reg) != 0) return errno_status("UFFDIO_REGISTER");
  }
  return c;
}

FirecrackerClient::FirecrackerClient(FirecrackerClient&& o) noexcept
    : layout_(o.layout_), memory_(std::exchange(o.memory_, nullptr)),
      uffd_(std::move(o.uffd_)), socket_(std::move(o.socket_)) {}

FirecrackerClient::~FirecrackerClient() {
  if (memory_) ::munmap(memory_, layout_.size);
}

std::string FirecrackerClient::handshake_json() const {
  const std::uint64_t page = std::uint64_t(::sysconf(_SC_PAGESIZE));
  const std::uint64_t region = layout_.size / std::uint64_t(layout_.regions);
  nlohmann::json regions = nlohmann::json::array();
  for (int i = 0; i < layout_.regions; ++i) {
    nlohmann::json r = {{"base_host_virt_addr", reinterpret_cast<std::uint64_t>(memory_) + std::uint64_t(i) * region},
                        {"size", region},
                        {"offset", layout_.image_offset + std::uint64_t(i) * region}};
    if (!layout_.old_format) {
      r["page_size"] = page;
      r["page_size_kib"] = page;
    }
    regions.push_back(r);
  }
  return regions.dump();
}

Status FirecrackerClient::connect_and_send(const std::filesystem::path& path, const std::string& message,
                                           int fd) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  socket_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(socket_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return errno_status("connect " + path.string());
  }
  if (send_with_fd(socket_.get(), message, fd) != ssize_t(message.size())) {
    return errno_status("sendmsg handshake");
  }
  return ok_status();
}

}  // namespace fcvm::uffd::testing
