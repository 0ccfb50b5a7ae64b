// Veth: sole owner of a veth pair, one end in the calling thread's namespace and its peer
// in another (or the same) namespace.
//
// Threading: one thread at a time. Cleanup: the destructor deletes the pair (deleting one
// end deletes both) unless release() was called; it also goes with the peer's namespace.
#pragma once

#include <string>

#include "fcvm/netns.h"
#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

class FCVM_SDK_API Veth {
 public:
  Veth() = default;
  Veth(Veth&&) noexcept;
  Veth& operator=(Veth&&) noexcept;
  ~Veth();

  // Creates `name` in the calling thread's namespace and `peer` in `peer_ns`.
  // already_exists when `name` is taken; nothing is left on failure.
  static Result<Veth> create(const std::string& name, const std::string& peer, const Netns& peer_ns);
  // Deletes the pair by the name of its local end. Idempotent.
  static Status remove(const std::string& name);

  const std::string& name() const { return name_; }
  const std::string& peer() const { return peer_; }
  void release() { name_.clear(); }

 private:
  Netns ns_;  // where `name` lives
  std::string name_;
  std::string peer_;
};

}  // namespace fcvm
