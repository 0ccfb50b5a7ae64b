// Netns: sole owner of a network namespace, named (/run/netns/NAME, visible to `ip netns`)
// or anonymous (held only by this object's fd).
//
// Threading: an object is used from one thread at a time. run_in() runs its function on a
// short-lived thread that joined the namespace, so the caller's own namespace never changes.
// Cleanup: the destructor removes a named namespace this object created (unmount + unlink)
// unless release() was called; devices inside (veth ends, taps, bridges) vanish with it
// once no process and no fd holds it.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "fcvm/visibility.h"

namespace fcvm {

class FCVM_SDK_API Netns {
 public:
  Netns() = default;
  Netns(Netns&&) noexcept;
  Netns& operator=(Netns&&) noexcept;
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  ~Netns();

  // Creates /run/netns/<name> as `ip netns add` does. already_exists when the name is
  // taken; needs CAP_SYS_ADMIN (unavailable otherwise). Nothing is left on failure.
  static Result<Netns> create_named(const std::string& name);
  // A fresh namespace held by an fd only: gone once this object and every process in it are.
  static Result<Netns> create_anonymous();
  // Opens an existing named namespace without taking ownership (the destructor keeps it).
  static Result<Netns> open_named(const std::string& name);
  // The calling thread's namespace, not owned.
  static Result<Netns> current();
  // Another handle on the same namespace, not owned (for objects that must outlive this one).
  Result<Netns> duplicate() const;
  // Removes a named namespace. Idempotent: a missing name is success.
  static Status remove_named(const std::string& name);
  static std::filesystem::path named_path(const std::string& name);

  bool valid() const { return fd_.get() >= 0; }
  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }
  // A path a child process can open to join it (SpawnOptions::namespaces): /run/netns/NAME,
  // or /proc/<this pid>/fd/<fd> for an anonymous one (valid while this object lives).
  std::filesystem::path join_path() const;

  // Runs `fn` on a thread inside this namespace and returns its Status. Sockets that `fn`
  // opens stay in this namespace after it returns.
  Status run_in(const std::function<Status()>& fn) const;

  // Keeps the named namespace after this object is gone.
  void release() { owned_ = false; }

 private:
  UniqueFd fd_;
  std::string name_;  // empty: anonymous
  bool owned_ = false;
};

// Reads or writes a sysctl under /proc/sys (key with dots: "net.ipv4.ip_forward") in the
// calling thread's network namespace; use inside Netns::run_in for a namespace's own keys.
FCVM_SDK_API Result<std::string> read_sysctl(const std::string& key);
FCVM_SDK_API Status write_sysctl(const std::string& key, const std::string& value);

}  // namespace fcvm
