#include "guest_system.h"

#include <signal.h>
#include <sys/reboot.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "console_log.h"
#include "device_finder.h"
#include "etc_files.h"
#include "guest_resync.h"
#include "network_setup.h"
#include "setup_error.h"

namespace fcvm::agent {

void LinuxGuest::apply_plan(const Plan& plan) {
  DeviceFinder devices;
  root_.enter(plan.root, devices);
  set_hostname(plan);
  if (plan.root.read_only) root_.make_read_only();
  NetworkSetup::bring_up_loopback();
  if (plan.network) NetworkSetup::configure(*plan.network, devices);
}

void LinuxGuest::set_hostname(const Plan& plan) {
  if (::sethostname(plan.hostname.data(), plan.hostname.size()) != 0) {
    throw_errno("set hostname " + plan.hostname);
  }
  // A --read-only root is the agent's to write for a moment: /etc names the new host.
  if (root_.read_only()) root_.set_writable(true);
  const bool written = EtcFiles::write(plan);
  if (root_.read_only()) root_.set_writable(false);
  if (!written) log_line("root is read-only: /etc/hosts and friends left as in the image");
}

void LinuxGuest::signal_all(int sig) {
  // From PID 1, kill(-1) reaches every process except PID 1 itself.
  ::kill(-1, sig);
}

void LinuxGuest::resync(const AttachRequest& request) {
  step_wall_clock(request.wall_time_ns);
  add_entropy(decode_hex(request.entropy_hex));
  flush_neighbour_cache();
}

void DryRunGuest::resync(const AttachRequest& request) {
  log_line("dry run: attach generation " + std::to_string(request.generation) +
           " would step the clock, reseed the RNG and flush the neighbour cache");
}

namespace {
volatile int g_halt_command = RB_POWER_OFF;
}  // namespace

int halt_command_for(std::string_view kernel_cmdline) {
  std::size_t pos = 0;
  while (pos < kernel_cmdline.size()) {
    const std::size_t end = std::min(kernel_cmdline.find(' ', pos), kernel_cmdline.size());
    if (kernel_cmdline.substr(pos, end - pos) == "fcvm.halt=reboot") return RB_AUTOBOOT;
    pos = end + 1;
  }
  return RB_POWER_OFF;
}

void set_halt_command(int command) { g_halt_command = command; }
int halt_command() { return g_halt_command; }

void LinuxGuest::power_off() {
  root_.prepare_power_off();
  ::reboot(halt_command());
  log_line("power off failed: " + errno_text(errno) + "; halting");
  ::reboot(RB_HALT_SYSTEM);
  for (;;) ::pause();  // PID 1 must not exit: that would panic the kernel
}

void DryRunGuest::apply_plan(const Plan& plan) {
  if (plan.root.mode != RootMode::kInitramfs) {
    throw SetupError("dry run: only root mode 'initramfs' can run outside a VM");
  }
}

void DryRunGuest::power_off() {
  log_line("dry run: power off");
  std::exit(0);
}

}  // namespace fcvm::agent
