// FirecrackerClient: the VMM side of the UFFD handshake, done the way Firecracker does it,
// for tests and benchmarks without a VM: anonymous MAP_PRIVATE guest memory, a userfaultfd
// from /dev/userfaultfd (USERFAULTFD_IOC_NEW; the syscall where the device is missing)
// with UFFD_FEATURE_EVENT_REMOVE, each region registered in MISSING mode, then one message
// on the page server's socket: the JSON regions and the uffd as SCM_RIGHTS.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"

namespace fcvm::uffd::testing {

struct ClientLayout {
  std::uint64_t size = 0;         // guest memory bytes (a multiple of the page size)
  std::uint64_t image_offset = 0; // where guest memory starts in the image
  int regions = 1;                // split into this many equal regions
  bool old_format = false;        // send only base_host_virt_addr, size, offset
};

class FirecrackerClient {
 public:
  // Maps and registers the memory; connects nothing yet.
  static Result<FirecrackerClient> create(const ClientLayout& layout);

  FirecrackerClient(FirecrackerClient&&) noexcept;
  FirecrackerClient& operator=(FirecrackerClient&&) = delete;
  ~FirecrackerClient();

  // The handshake message Firecracker would send for this layout.
  std::string handshake_json() const;
  // Connects to `socket` and sends `message` with `fd` as SCM_RIGHTS (-1: no fd).
  Status connect_and_send(const std::filesystem::path& socket, const std::string& message, int fd);
  // Firecracker's message with the uffd.
  Status connect_and_send(const std::filesystem::path& socket) {
    return connect_and_send(socket, handshake_json(), uffd());
  }

  std::uint8_t* memory() const { return memory_; }
  std::uint64_t size() const { return layout_.size; }
  int uffd() const { return uffd_.get(); }
  int socket() const { return socket_.get(); }

 private:
  FirecrackerClient() = default;
  ClientLayout layout_;
  std::uint8_t* memory_ = nullptr;
  UniqueFd uffd_, socket_;
};

// Creates a userfaultfd the way Firecracker does (non-blocking, EVENT_REMOVE negotiated).
Result<UniqueFd> create_userfaultfd();

}  // namespace fcvm::uffd::testing
