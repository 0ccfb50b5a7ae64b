// fc-agent: PID 1 of an fcvm guest. As PID 1 it mounts the API filesystems, finds the
// virtio-serial port "fcvm.agent" and hands over to the event loop, which ends in power-off.
// PID 1 must never exit (the kernel would panic), so every failure path powers off instead.
//
// Run as an ordinary process (development, tests) it needs the channel on the command line
// and accepts only "initramfs" plans:  fc-agent --port-fd N  |  fc-agent --connect SOCKET
#include <fcntl.h>
#include <signal.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "agent.h"
#include "console_log.h"
#include "device_finder.h"
#include "guest_root.h"
#include "guest_system.h"
#include "setup_error.h"

namespace {

using fcvm::agent::log_line;

constexpr std::chrono::milliseconds kPortTimeout{10000};

[[noreturn]] void emergency_power_off() {
  ::sync();
  ::reboot(RB_POWER_OFF);
  for (;;) ::pause();
}

// A fault in PID 1 would panic the kernel: report it and power off instead. Only
// async-signal-safe calls here.
void on_crash(int) {
  static const char kMessage[] = "fc-agent: crashed; powering off\n";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  ::sync();
  ::reboot(RB_POWER_OFF);
  for (;;) ::pause();
}

void install_crash_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_crash;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) ::sigaction(sig, &sa, nullptr);
}

// Makes sure fds 0-2 are open, so pipes created later never land on them.
void open_standard_fds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1) continue;
    int opened = ::open("/dev/console", O_RDWR | O_NOCTTY);
    if (opened < 0) opened = ::open("/dev/null", O_RDWR);
    if (opened >= 0 && opened != fd) {
      ::dup2(opened, fd);
      ::close(opened);
    }
  }
}

[[noreturn]] void run_as_pid1() {
  fcvm::agent::LinuxGuest guest;
  try {
    fcvm::agent::GuestRoot::mount_api_filesystems();
    open_standard_fds();
    fcvm::agent::open_console_log();
    ::reboot(RB_DISABLE_CAD);  // Ctrl-Alt-Del becomes SIGINT: a clean shutdown
    fcvm::agent::DeviceFinder devices;
    auto port_path = fcvm::agent::DeviceFinder::wait_for(
        [&] { return devices.virtio_port(fcvm::agent::kPortName); }, kPortTimeout);
    if (!port_path) {
      throw fcvm::agent::SetupError(
          "no virtio-serial port named fcvm.agent (is the VM started with a virtserialport "
          "name=fcvm.agent and virtio_console in the kernel?)");
    }
    fcvm::agent::OwnedFd port(::open(port_path->c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!port) fcvm::agent::throw_errno("open " + port_path->string());
    fcvm::agent::Agent agent(guest, std::move(port));
    agent.run();
  } catch (const std::exception& e) {
    log_line(std::string("fatal: ") + e.what() + "; powering off");
  }
  guest.power_off();
}

fcvm::agent::OwnedFd connect_socket(const char* path) {
  fcvm::agent::OwnedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    fcvm::agent::throw_errno(std::string("connect ") + path);
  }
  return fd;
}

int run_dry(int argc, char** argv) {
  fcvm::agent::OwnedFd port;
  if (argc == 3 && std::strcmp(argv[1], "--port-fd") == 0) {
    port.reset(std::atoi(argv[2]));
    ::fcntl(port.get(), F_SETFD, FD_CLOEXEC);
  } else if (argc == 3 && std::strcmp(argv[1], "--connect") == 0) {
    port = connect_socket(argv[2]);
  } else {
    log_line("not PID 1: usage: fc-agent --port-fd N | --connect SOCKET (dry run)");
    return 2;
  }
  ::fcntl(port.get(), F_SETFL, ::fcntl(port.get(), F_GETFL) | O_NONBLOCK);
  fcvm::agent::DryRunGuest guest;
  fcvm::agent::Agent agent(guest, std::move(port));
  agent.run();
}

}  // namespace

int main(int argc, char** argv) {
  if (::getpid() != 1) {
    try {
      return run_dry(argc, argv);
    } catch (const std::exception& e) {
      log_line(std::string("fatal: ") + e.what());
      return 1;
    }
  }
  install_crash_handlers();
  std::set_terminate([] {
    log_line("terminate called; powering off");
    emergency_power_off();
  });
  run_as_pid1();
}
