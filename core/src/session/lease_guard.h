// LeaseGuard: owns one lease a backend handed out (disks, a network) and gives it back when
// the guard is reset or destroyed, so a VM session releases everything on every path.
//
// Threading: one thread at a time. Never throws from reset() or the destructor: a failed
// release is logged (the lease stays in the state record, where `fcvm gc` finds it).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "fcvm/log.h"
#include "fcvm/result.h"

namespace fcvm {

template <class Lease>
class LeaseGuard {
 public:
  using Release = std::function<Status(const Lease&)>;

  LeaseGuard() = default;
  // `what` names the lease in the warning a failed release logs ("disk cleanup").
  LeaseGuard(Lease lease, Release release, LoggerPtr log, std::string what)
      : lease_(std::move(lease)), release_(std::move(release)), log_(std::move(log)),
        what_(std::move(what)) {}
  LeaseGuard(LeaseGuard&& other) noexcept { *this = std::move(other); }
  LeaseGuard& operator=(LeaseGuard&& other) noexcept {
    if (this != &other) {
      reset();
      lease_ = std::exchange(other.lease_, std::nullopt);
      release_ = std::move(other.release_);
      log_ = std::move(other.log_);
      what_ = std::move(other.what_);
    }
    return *this;
  }
  LeaseGuard(const LeaseGuard&) = delete;
  LeaseGuard& operator=(const LeaseGuard&) = delete;
  ~LeaseGuard() { reset(); }

  explicit operator bool() const { return lease_.has_value(); }
  // Precondition: holds a lease. Callers may update it (a backend adds to `extra`).
  Lease& operator*() { return *lease_; }
  const Lease& operator*() const { return *lease_; }
  Lease* operator->() { return &*lease_; }
  const Lease* operator->() const { return &*lease_; }
  // The lease, or nullopt once released.
  const std::optional<Lease>& get() const { return lease_; }

  // Releases the lease now. Idempotent.
  void reset() noexcept {
    if (!lease_) return;
    Lease lease = std::move(*lease_);
    lease_.reset();
    Status st = release_(lease);
    if (!st.ok() && log_) log_->warn(what_ + ": " + st.message());
  }

 private:
  std::optional<Lease> lease_;
  Release release_;
  LoggerPtr log_;
  std::string what_;
};

}  // namespace fcvm
