// HostTsc: the host's time-stamp-counter frequency.
//
// Under TCG a guest reads the host's TSC (QEMU passes host ticks through), but it has no
// reference clock to calibrate it against on microvm (no HPET, no ACPI PM timer), and the
// PIT calibration fails whenever the host is busy: the guest then hangs at boot or falls
// back to jiffies and runs slow. Telling the guest the frequency avoids both.
#pragma once

namespace fcvm::qemu {

class HostTsc {
 public:
  // The frequency in kHz, measured once per process (about 20 ms, thread-safe) against
  // CLOCK_MONOTONIC_RAW; 0 when the host has no constant-rate TSC or is not x86-64.
  static unsigned khz();

  // The measurement itself, uncached.
  static unsigned measure_khz();
};

}  // namespace fcvm::qemu
