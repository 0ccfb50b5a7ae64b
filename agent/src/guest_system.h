// What the agent's event loop asks of the machine under it. LinuxGuest is the real thing
// (the agent is PID 1 of a VM); DryRunGuest lets the same loop run as an ordinary process
// on a development host, where mounting, reconfiguring the network or powering off would
// be wrong. Both are used from the agent's single thread only.
#pragma once

#include <string>
#include <string_view>

#include "fcvm/agent_plan.h"
#include "guest_root.h"
#include "owned_fd.h"

namespace fcvm::agent {

// The reboot(2) command that ends this VM, from the kernel command line. Firecracker on x86
// cannot power a guest off: its plugin passes "fcvm.halt=reboot" (beside reboot=k), and a
// reboot then ends the Firecracker process. Anything else powers off.
int halt_command_for(std::string_view kernel_cmdline);
// The command chosen for this boot: set once by set_halt_command at start, read by the
// crash handler too (so a plain int, async-signal-safe to read).
void set_halt_command(int command);
int halt_command();

class GuestSystem {
 public:
  virtual ~GuestSystem() = default;

  // Makes the plan's world: root filesystem, hostname, /etc files, network. Called once,
  // before the main process starts. Throws SetupError with a message for the user.
  virtual void apply_plan(const Plan& plan) = 0;

  // Gives an applied plan's world the plan's hostname (kernel, /etc/hostname, /etc/hosts):
  // a held start that got another name with GO. Throws SetupError.
  virtual void set_hostname(const Plan& plan) = 0;

  // Sends `sig` to every process but the agent (the session processes are signalled by the
  // agent itself as well).
  virtual void signal_all(int sig) = 0;

  // After an ATTACH: steps the wall clock to the host's, mixes the host's entropy into the
  // kernel RNG and flushes the neighbour (ARP) cache, so a restored clone does not keep the
  // snapshot's time, random state or stale MAC addresses. Failures are logged, not thrown.
  virtual void resync(const AttachRequest& request) = 0;

  // Flushes the disks and ends the machine (or the dry-run process). Never returns.
  [[noreturn]] virtual void power_off() = 0;
};

class LinuxGuest final : public GuestSystem {
 public:
  void apply_plan(const Plan& plan) override;
  void set_hostname(const Plan& plan) override;
  void signal_all(int sig) override;
  void resync(const AttachRequest& request) override;
  [[noreturn]] void power_off() override;

 private:
  GuestRoot root_;
};

class DryRunGuest final : public GuestSystem {
 public:
  // Accepts only plans with root mode "initramfs" and applies nothing.
  void apply_plan(const Plan& plan) override;
  void set_hostname(const Plan&) override {}
  void signal_all(int) override {}
  // Touches nothing on the development host: logs what it would do.
  void resync(const AttachRequest& request) override;
  [[noreturn]] void power_off() override;
};

}  // namespace fcvm::agent
