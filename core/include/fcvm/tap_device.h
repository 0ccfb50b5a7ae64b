// TapDevice: sole owner of a persistent tap device inside a network namespace, for a VMM
// to open by name (QEMU -netdev tap,ifname=..., Firecracker host_dev_name).
//
// Threading: one thread at a time. Cleanup: the destructor deletes the device unless
// release() was called; a device inside a namespace also goes when the namespace does.
#pragma once

#include <string>

#include "fcvm/netns.h"
#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

class FCVM_SDK_API TapDevice {
 public:
  TapDevice() = default;
  TapDevice(TapDevice&&) noexcept;
  TapDevice& operator=(TapDevice&&) noexcept;
  ~TapDevice();

  // Creates tap `name` (IFF_TAP | IFF_NO_PI, persistent) in `ns`, and brings it up with
  // `mtu` (0: the default). already_exists when the name is taken there. Needs
  // CAP_NET_ADMIN over `ns` (root, or root of the user namespace owning it).
  static Result<TapDevice> create(const Netns& ns, const std::string& name, unsigned mtu = 0);
  // Deletes tap `name` in `ns`. Idempotent.
  static Status remove(const Netns& ns, const std::string& name);

  const std::string& name() const { return name_; }
  void release() { name_.clear(); }

 private:
  Netns ns_;  // a duplicate handle: keeps the namespace reachable for the destructor
  std::string name_;
};

}  // namespace fcvm
