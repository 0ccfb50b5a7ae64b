#include "test_guest.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"

namespace fcvm::qemu::testing {
namespace {

constexpr const char* kInit = R"INIT(#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "FCVM-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
for b in /sys/block/vd*; do
  [ -e "$b/serial" ] && echo "FCVM-DISK ${b##*/} $(cat $b/serial)"
done
mode=idle
for w in $(cat /proc/cmdline); do
  case "$w" in fcvm_test=*) mode="${w#fcvm_test=}" ;; esac
done
case "$mode" in
  poweroff) poweroff -f ;;
  reboot) reboot -f ;;
  counter)
    i=0
    while true; do echo "FCVM-COUNT $i"; i=$((i+1)); sleep 0.2; done ;;
esac
while true; do sleep 1; done
)INIT";

}  // namespace

std::optional<std::filesystem::path> TestGuest::kernel(std::string* why) {
  const char* env = std::getenv("FCVM_TEST_KERNEL");
  if (env == nullptr || *env == '\0') {
    *why = "FCVM_TEST_KERNEL is not set; point it at a guest kernel with virtio-mmio and "
           "ACPI built in (e.g. /work/kernel-dev/vmlinux) to run the QEMU guest tests";
    return std::nullopt;
  }
  std::error_code ec;
  if (!std::filesystem::exists(env, ec)) {
    *why = std::string("FCVM_TEST_KERNEL=") + env + " does not exist";
    return std::nullopt;
  }
  return std::filesystem::path(env);
}

Result<TestGuest> TestGuest::create() {
  auto dir = TempDir::create("fcvm-qemu-test-");
  if (!dir) return dir.status();
  TestGuest guest{std::move(*dir)};
  const auto root = guest.dir() / "rootfs";
  std::error_code ec;
  std::filesystem::create_directories(root / "bin", ec);
  if (ec) return error(Errc::io, "mkdir " + root.string() + ": " + ec.message());
  std::filesystem::copy_file("/bin/busybox", root / "bin" / "busybox", ec);
  if (ec) return error(Errc::unavailable, "copy /bin/busybox (install busybox-static): " + ec.message());
  FCVM_RETURN_IF_ERROR(write_file_atomic(root / "init", kInit, 0755));
  guest.initrd_ = guest.dir() / "initrd.gz";
  auto built = run_command({"sh", "-c", "find . | cpio -o -H newc --quiet | gzip -1 > '" +
                                            guest.initrd_.string() + "'"},
                           root);
  if (!built) return built.status();
  return guest;
}

VmSpec TestGuest::spec(const std::string& name, const std::filesystem::path& kernel,
                       const std::string& mode) const {
  VmSpec s;
  s.name = name;
  s.dir = dir() / name;
  s.vcpus = 1;
  s.memory_mib = 256;
  s.kernel = kernel;
  s.initrd = initrd_;
  s.cmdline = "console=ttyS0 quiet panic=-1 fcvm_test=" + mode;
  s.console_log = s.dir / "console.log";
  s.agent_socket = s.dir / "agent.sock";
  std::filesystem::create_directories(s.dir);
  const auto disk = s.dir / "data.raw";
  std::ofstream(disk).close();
  std::filesystem::resize_file(disk, 1 << 20);
  s.drives = {{"data", disk, false}};
  return s;
}

std::optional<std::string> TestGuest::wait_for_file(
    const std::filesystem::path& file, const std::function<bool(const std::string&)>& done,
    std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (done(text.str())) return text.str();
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::vector<long> TestGuest::counts(const std::string& console) {
  std::vector<long> out;
  size_t pos = 0;
  for (;;) {
    const size_t nl = console.find('\n', pos);
    if (nl == std::string::npos) break;
    std::string line = console.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("FCVM-COUNT ", 0) == 0) out.push_back(std::stol(line.substr(11)));
  }
  return out;
}

}  // namespace fcvm::qemu::testing
