#include "accel_choice.h"

namespace fcvm::qemu {

const char* to_string(Accel accel) noexcept { return accel == Accel::kvm ? "kvm" : "tcg"; }

AccelChoice AccelChoice::decide(const QemuConfig& config, const KvmHost& host) {
  const bool hardware = host.kvm_intel || host.kvm_amd;
  const std::string dev_kvm_problem =
      "/dev/kvm cannot be opened read-write (" +
      (host.dev_kvm_error.empty() ? std::string("unknown error") : host.dev_kvm_error) + ")";
  switch (config.accel) {
    case AccelMode::tcg:
      return {Accel::tcg, true, "tcg: forced by " + config.accel_source};
    case AccelMode::kvm:
      if (!host.dev_kvm_rw) {
        return {Accel::kvm, false,
                "kvm forced by " + config.accel_source + " but " + dev_kvm_problem +
                    "; fix: load kvm_intel/kvm_amd and give this user access to /dev/kvm, "
                    "or set accel to auto or tcg"};
      }
      if (!hardware && host.kvm_pvm) {
        return {Accel::kvm, true,
                "kvm: forced by " + config.accel_source +
                    " (warning: /dev/kvm is PVM-backed; an unmodified guest kernel hangs)"};
      }
      return {Accel::kvm, true, "kvm: forced by " + config.accel_source};
    case AccelMode::automatic:
      break;
  }
  if (!hardware) {
    if (host.kvm_pvm) {
      return {Accel::tcg, true, "tcg: /dev/kvm is PVM-backed (kvm_pvm loaded, no kvm_intel/kvm_amd)"};
    }
    return {Accel::tcg, true, "tcg: no kvm_intel/kvm_amd module loaded"};
  }
  if (!host.dev_kvm_rw) return {Accel::tcg, true, "tcg: " + dev_kvm_problem};
  return {Accel::kvm, true,
          std::string("kvm: ") + (host.kvm_intel ? "kvm_intel" : "kvm_amd") +
              " loaded and /dev/kvm is read-write"};
}

}  // namespace fcvm::qemu
