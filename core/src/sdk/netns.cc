#include "fcvm/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "fcvm/atomic_file.h"

namespace fcvm {
namespace {

const std::filesystem::path kNetnsDir = "/run/netns";

// Runs `fn` on a new thread and returns its Status; the thread may change its own namespaces.
Status on_own_thread(const std::function<Status()>& fn) {
  Status result;
  std::thread worker([&] {
    try {
      result = fn();
    } catch (const std::exception& e) {
      result = error(Errc::internal, e.what());
    }
  });
  worker.join();
  return result;
}

// The dir's mounts must propagate into other mount namespaces (as iproute2 sets it up), so
// that a namespace created here is visible to processes that unshared their mounts earlier.
Status prepare_netns_dir() {
  if (::mkdir(kNetnsDir.c_str(), 0755) != 0 && errno != EEXIST) {
    return errno_status("create " + kNetnsDir.string());
  }
  if (::mount("", kNetnsDir.c_str(), "none", MS_SHARED | MS_REC, nullptr) == 0) return ok_status();
  if (errno != EINVAL) return errno_status("make " + kNetnsDir.string() + " a shared mount");
  if (::mount(kNetnsDir.c_str(), kNetnsDir.c_str(), "none", MS_BIND | MS_REC, nullptr) != 0) {
    return errno_status("bind-mount " + kNetnsDir.string());
  }
  if (::mount("", kNetnsDir.c_str(), "none", MS_SHARED | MS_REC, nullptr) != 0) {
    return errno_status("make " + kNetnsDir.string() + " a shared mount");
  }
  return ok_status();
}

bool valid_name(const std::string& name) {
  return !name.empty() && name.size() < 64 && name != "." && name != ".." &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
         });
}

}  // namespace

Netns::Netns(Netns&& o) noexcept
    : fd_(std::move(o.fd_)), name_(std::move(o.name_)), owned_(std::exchange(o.owned_, false)) {}

Netns& Netns::operator=(Netns&& o) noexcept {
  if (this != &o) {
    if (owned_ && !name_.empty()) (void)remove_named(name_);
    fd_ = std::move(o.fd_);
    name_ = std::move(o.name_);
    owned_ = std::exchange(o.owned_, false);
  }
  return *this;
}

Netns::~Netns() {
  fd_.reset();
  if (owned_ && !name_.empty()) (void)remove_named(name_);
}

std::filesystem::path Netns::named_path(const std::string& name) { return kNetnsDir / name; }

Result<Netns> Netns::create_named(const std::string& name) {
  if (!valid_name(name)) return error(Errc::invalid_argument, "bad network namespace name '" + name + "'");
  if (::geteuid() != 0) {
    return error(Errc::unavailable, "creating a named network namespace needs root (CAP_SYS_ADMIN)");
  }
  FCVM_RETURN_IF_ERROR(prepare_netns_dir());
  const auto path = named_path(name);
  const int placeholder = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (placeholder < 0) {
    if (errno == EEXIST) return error(Errc::already_exists, "network namespace " + name + " exists");
    return errno_status("create " + path.string());
  }
  ::close(placeholder);
  Status made = on_own_thread([&] {
    if (::unshare(CLONE_NEWNET) != 0) return errno_status("unshare(CLONE_NEWNET)");
    if (::mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0) {
      return errno_status("bind-mount the new network namespace on " + path.string());
    }
    return ok_status();
  });
  Netns ns;
  ns.name_ = name;
  ns.owned_ = true;  // from here the destructor removes it on any failure
  if (!made.ok()) return made;
  ns.fd_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.fd_) return errno_status("open " + path.string());
  return ns;
}

Result<Netns> Netns::create_anonymous() {
  Netns ns;
  Status made = on_own_thread([&] {
    if (::unshare(CLONE_NEWNET) != 0) return errno_status("unshare(CLONE_NEWNET)");
    ns.fd_.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!ns.fd_) return errno_status("open /proc/thread-self/ns/net");
    return ok_status();
  });
  if (!made.ok()) return made;
  return ns;
}

Result<Netns> Netns::open_named(const std::string& name) {
  if (!valid_name(name)) return error(Errc::invalid_argument, "bad network namespace name '" + name + "'");
  Netns ns;
  ns.name_ = name;
  ns.fd_.reset(::open(named_path(name).c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.fd_) {
    if (errno == ENOENT) return error(Errc::not_found, "no network namespace " + name);
    return errno_status("open " + named_path(name).string());
  }
  return ns;
}

Result<Netns> Netns::current() {
  Netns ns;
  ns.fd_.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!ns.fd_) return errno_status("open /proc/thread-self/ns/net");
  return ns;
}

Result<Netns> Netns::duplicate() const {
  Netns ns;
  ns.name_ = name_;
  ns.fd_.reset(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!ns.fd_) return errno_status("dup network namespace fd");
  return ns;
}

Status Netns::remove_named(const std::string& name) {
  if (!valid_name(name)) return error(Errc::invalid_argument, "bad network namespace name '" + name + "'");
  const auto path = named_path(name);
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return errno_status("unmount " + path.string());
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_status("remove " + path.string());
  return ok_status();
}

std::filesystem::path Netns::join_path() const {
  if (!name_.empty()) return named_path(name_);
  return "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fd_.get());
}

Status Netns::run_in(const std::function<Status()>& fn) const {
  if (!valid()) return error(Errc::internal, "run_in on an empty Netns");
  return on_own_thread([&] {
    if (::setns(fd_.get(), CLONE_NEWNET) != 0) return errno_status("enter network namespace " + name_);
    return fn();
  });
}

namespace {
std::filesystem::path sysctl_path(const std::string& key) {
  std::string rel = key;
  std::replace(rel.begin(), rel.end(), '.', '/');
  return std::filesystem::path("/proc/sys") / rel;
}
}  // namespace

Result<std::string> read_sysctl(const std::string& key) {
  auto text = read_file(sysctl_path(key));
  if (!text) return text.status();
  while (!text->empty() && (text->back() == '\n' || text->back() == ' ')) text->pop_back();
  return *text;
}

Status write_sysctl(const std::string& key, const std::string& value) {
  const auto path = sysctl_path(key);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno_status("open " + path.string());
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return errno_status("write " + value + " to " + path.string());
  }
  return ok_status();
}

}  // namespace fcvm
