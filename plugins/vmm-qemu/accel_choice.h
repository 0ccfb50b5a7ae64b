// AccelChoice: which QEMU accelerator a VM gets, and why.
#pragma once

#include <string>

#include "kvm_host.h"
#include "qemu_config.h"

namespace fcvm::qemu {

enum class Accel { kvm, tcg };

const char* to_string(Accel accel) noexcept;

struct AccelChoice {
  Accel accel = Accel::tcg;
  bool usable = true;  // false when KVM was forced but /dev/kvm cannot be used
  std::string reason;  // one line: "tcg: /dev/kvm is PVM-backed (...)"

  // auto picks KVM only on a host with kvm_intel or kvm_amd loaded and a read-write
  // /dev/kvm: under PVM (kvm_pvm alone) an unmodified guest spins forever, so it gets TCG.
  // A forced mode is honoured when it can run at all. Pure.
  static AccelChoice decide(const QemuConfig& config, const KvmHost& host);
};

}  // namespace fcvm::qemu
