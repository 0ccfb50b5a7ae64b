// uffd-harness: a stand-in for a Firecracker VMM restored with a Uffd memory backend.
// Does what Firecracker does (firecracker_client.h), then reads every page of guest memory
// and compares it with the image; exits 0 only when every byte matched.
//
//   uffd-harness SOCKET IMAGE [--size N] [--offset N] [--regions N] [--old-format]
//                [--wait-stdin] [--hold] [--dontneed OFFSET:LEN] [--touch N]
// --wait-stdin: read one byte from stdin before connecting (the caller registers our pid);
// --hold: once done, stay (connected) until stdin closes;
// --dontneed: after the check, MADV_DONTNEED that range and check it reads zeros, then
//             check the whole memory again;
// --touch N: read only the first N pages (a working set), in order;
// --remove-storm N: while one thread reads the first half, another MADV_DONTNEEDs the
//             second half N times (removes racing faults); then the first half must match
//             the image and the second read as zeros.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>
#include <string>
#include <vector>

#include "firecracker_client.h"

namespace {

using fcvm::uffd::testing::ClientLayout;
using fcvm::uffd::testing::FirecrackerClient;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "uffd-harness: %s\n", why.c_str());
  std::exit(1);
}

// Compares guest pages [first, last) with the image (or zeros within [zero_from, zero_to)).
void check(const std::uint8_t* mem, const std::vector<char>& image, std::uint64_t image_offset,
           std::uint64_t first, std::uint64_t last, std::uint64_t zero_from, std::uint64_t zero_to) {
  const std::uint64_t page = std::uint64_t(::sysconf(_SC_PAGESIZE));
  static const std::vector<char> zeros(page, 0);
  for (std::uint64_t off = first; off < last; off += page) {
    const bool zero = off >= zero_from && off < zero_to;
    const char* want = zero ? zeros.data() : image.data() + image_offset + off;
    if (std::memcmp(mem + off, want, page) != 0) {
      die("page at offset " + std::to_string(off) + (zero ? " is not zero" : " differs from the image"));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) die("usage: uffd-harness SOCKET IMAGE [options]");
  const std::string socket = argv[1];
  std::ifstream in(argv[2], std::ios::binary);
  std::vector<char> image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (image.empty()) die(std::string("cannot read image ") + argv[2]);
  ClientLayout layout;
  layout.size = image.size();
  bool wait_stdin = false, hold = false;
  std::uint64_t dontneed_off = 0, dontneed_len = 0, touch = ~0ull, storm = 0;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--size") layout.size = std::stoull(next());
    else if (a == "--offset") layout.image_offset = std::stoull(next());
    else if (a == "--regions") layout.regions = std::stoi(next());
    else if (a == "--old-format") layout.old_format = true;
    else if (a == "--wait-stdin") wait_stdin = true;
    else if (a == "--hold") hold = true;
    else if (a == "--touch") touch = std::stoull(next());
    else if (a == "--remove-storm") storm = std::stoull(next());
    else if (a == "--dontneed") {
      const std::string v = next();
      const auto colon = v.find(':');
      if (colon == std::string::npos) die("--dontneed OFFSET:LEN");
      dontneed_off = std::stoull(v.substr(0, colon));
      dontneed_len = std::stoull(v.substr(colon + 1));
    } else die("unknown option " + a);
  }
  if (layout.image_offset + layout.size > image.size()) die("layout exceeds the image");
  auto client = FirecrackerClient::create(layout);
  if (!client) die(client.status().message());
  if (wait_stdin) {
    char byte;
    if (::read(0, &byte, 1) != 1) die("stdin closed before the go byte");
  }
  if (auto st = client->connect_and_send(socket); !st.ok()) die(st.message());
  const std::uint64_t page = std::uint64_t(::sysconf(_SC_PAGESIZE));
  if (storm) {
    const std::uint64_t half = layout.size / 2;
    std::thread remover([&] {
      for (std::uint64_t i = 0; i < storm; ++i) {
        if (::madvise(client->memory() + half, half, MADV_DONTNEED) != 0) die("madvise in the storm");
      }
    });
    check(client->memory(), image, layout.image_offset, 0, half, 0, 0);
    remover.join();
    check(client->memory(), image, layout.image_offset, 0, layout.size, half, layout.size);
    std::printf("ok storm\n");
    return 0;
  }
  const std::uint64_t last = std::min(layout.size, touch == ~0ull ? layout.size : touch * page);
  check(client->memory(), image, layout.image_offset, 0, last, 0, 0);
  if (dontneed_len) {
    if (::madvise(client->memory() + dontneed_off, dontneed_len, MADV_DONTNEED) != 0) {
      die(std::string("madvise: ") + std::strerror(errno));
    }
    check(client->memory(), image, layout.image_offset, 0, layout.size, dontneed_off, dontneed_off + dontneed_len);
  }
  std::printf("ok %llu pages\n", static_cast<unsigned long long>(last / page));
  std::fflush(stdout);
  char byte;
  while (hold && ::read(0, &byte, 1) > 0) {
  }
  return 0;
}
