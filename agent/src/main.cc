// fc-agent: PID 1 of an fcvm guest. As PID 1 it mounts the API filesystems, finds its host
// (the virtio-serial port named agent::kPortName, or else a host connection on AF_VSOCK
// port agent::kVsockPort) and hands over to the event loop, which ends in power-off.
// PID 1 must never exit (the kernel would panic), so every failure path powers off instead.
//
// Run as an ordinary process (development, tests) it needs the channel on the command line
// and accepts only "initramfs" plans:
//   fc-agent --port-fd N | --connect SOCKET | --listen-unix SOCKET | --listen-vsock PORT
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>

#include "agent.h"
#include "console_log.h"
#include "device_finder.h"
#include "guest_root.h"
#include "guest_system.h"
#include "host_link.h"
#include "process_table.h"
#include "setup_error.h"

namespace {

using fcvm::agent::log_line;

constexpr std::chrono::milliseconds kPortTimeout{10000};
constexpr int kPortPollMs = 10;

[[noreturn]] void emergency_power_off() {
  ::sync();
  ::reboot(fcvm::agent::halt_command());
  for (;;) ::pause();
}

// A fault in PID 1 would panic the kernel: report it and power off instead. Only
// async-signal-safe calls here.
void on_crash(int) {
  static const char kMessage[] = "fc-agent: crashed; powering off\n";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  ::sync();
  ::reboot(fcvm::agent::halt_command());
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

// The virtio-serial port when the VM has one (vmm-qemu), else the vsock listener once the
// host connects to it (Firecracker). Both are looked for together: built-in drivers have
// usually registered the port before /init runs, but modules may still be loading.
fcvm::agent::HostLink find_host_link() {
  using fcvm::agent::HostLink;
  fcvm::agent::DeviceFinder devices;
  std::string vsock_problem;
  fcvm::agent::OwnedFd listener =
      HostLink::listen_vsock(fcvm::agent::kVsockPort, &vsock_problem);
  const auto deadline = std::chrono::steady_clock::now() + kPortTimeout;
  for (;;) {
    if (auto port_path = devices.virtio_port(fcvm::agent::kPortName)) {
      fcvm::agent::OwnedFd port(::open(port_path->c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
      if (!port) fcvm::agent::throw_errno("open " + port_path->string());
      return HostLink::serial_port(std::move(port));
    }
    if (listener) {
      pollfd p{listener.get(), POLLIN, 0};
      if (::poll(&p, 1, kPortPollMs) > 0) return HostLink::listener(std::move(listener));
    } else {
      ::poll(nullptr, 0, kPortPollMs);
    }
    if (std::chrono::steady_clock::now() < deadline) continue;
    // No port by now: a vsock host may still be on its way; wait for it in the loop.
    if (listener) return HostLink::listener(std::move(listener));
    throw fcvm::agent::SetupError(
        "no virtio-serial port named " + std::string(fcvm::agent::kPortName) +
        " and no vsock (" + vsock_problem +
        "): start the VM with a virtserialport of that name and virtio_console in the "
        "kernel, or with a vsock device");
  }
}

[[noreturn]] void run_as_pid1() {
  fcvm::agent::LinuxGuest guest;
  try {
    fcvm::agent::GuestRoot::mount_api_filesystems();
    {
      std::ifstream cmdline("/proc/cmdline");
      std::string text;
      std::getline(cmdline, text);
      fcvm::agent::set_halt_command(fcvm::agent::halt_command_for(text));
    }
    open_standard_fds();
    fcvm::agent::open_console_log();
    ::reboot(RB_DISABLE_CAD);  // Ctrl-Alt-Del becomes SIGINT: a clean shutdown
    fcvm::agent::Agent agent(guest, find_host_link());
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

fcvm::agent::HostLink connected(fcvm::agent::OwnedFd port) {
  ::fcntl(port.get(), F_SETFD, FD_CLOEXEC);
  ::fcntl(port.get(), F_SETFL, ::fcntl(port.get(), F_GETFL) | O_NONBLOCK);
  return fcvm::agent::HostLink::connected(std::move(port));
}

int run_dry(int argc, char** argv) {
  using fcvm::agent::HostLink;
  std::optional<HostLink> link;
  const std::string option = argc == 3 ? argv[1] : "";
  if (option == "--port-fd") {
    link = connected(fcvm::agent::OwnedFd(std::atoi(argv[2])));
  } else if (option == "--connect") {
    link = connected(connect_socket(argv[2]));
  } else if (option == "--listen-unix") {
    link = HostLink::listener(HostLink::listen_unix(argv[2]));
  } else if (option == "--listen-vsock") {
    std::string why;
    auto listener = HostLink::listen_vsock(static_cast<std::uint32_t>(std::atoi(argv[2])), &why);
    if (!listener) throw fcvm::agent::SetupError(why);
    link = HostLink::listener(std::move(listener));
  } else {
    log_line("not PID 1: usage: fc-agent --port-fd N | --connect SOCKET | --listen-unix SOCKET "
             "| --listen-vsock PORT (dry run)");
    return 2;
  }
  fcvm::agent::DryRunGuest guest;
  fcvm::agent::Agent agent(guest, std::move(*link));
  agent.run();
}

}  // namespace

int main(int argc, char** argv) {
  // `fc-agent ps`: the process table, for `fcvm top` (run in the guest by the agent's exec).
  if (argc == 2 && std::string_view(argv[1]) == "ps" && ::getpid() != 1) {
    std::fputs(fcvm::agent::format_process_table(
                   fcvm::agent::read_process_table("/proc", "/etc/passwd", static_cast<int>(::getpid())))
                   .c_str(),
               stdout);
    return 0;
  }
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
