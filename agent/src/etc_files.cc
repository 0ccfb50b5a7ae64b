#include "etc_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "console_log.h"
#include "owned_fd.h"
#include "setup_error.h"

namespace fcvm::agent {
namespace {

// Returns false when the filesystem is read-only.
bool replace_file(const std::filesystem::path& path, const std::string& content) {
  const std::string tmp = path.string() + ".fcvm-tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (errno == EROFS) return false;
    throw_errno("create " + tmp);
  }
  OwnedFd owned(fd);
  std::string_view rest = content;
  while (!rest.empty()) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("write " + tmp);
    rest.remove_prefix(static_cast<size_t>(n));
  }
  owned.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("rename " + tmp + " to " + path.string());
  return true;
}

}  // namespace

std::string EtcFiles::hostname_file(const Plan& plan) { return plan.hostname + "\n"; }

std::string EtcFiles::hosts_file(const Plan& plan) {
  std::string out =
      "127.0.0.1\tlocalhost\n"
      "::1\tlocalhost ip6-localhost ip6-loopback\n";
  const std::string own = plan.network ? plan.network->address : "127.0.1.1";
  out += own + "\t" + plan.hostname + "\n";
  return out;
}

std::string EtcFiles::resolv_conf(const Plan& plan) {
  if (!plan.network || plan.network->dns.empty()) return {};
  std::string out;
  for (const auto& server : plan.network->dns) out += "nameserver " + server + "\n";
  return out;
}

bool EtcFiles::write(const Plan& plan, const std::filesystem::path& root) {
  const auto etc = root / "etc";
  if (::mkdir(etc.c_str(), 0755) != 0 && errno != EEXIST) {
    if (errno == EROFS) return false;
    throw_errno("mkdir " + etc.string());
  }
  if (!replace_file(etc / "hostname", hostname_file(plan))) return false;
  replace_file(etc / "hosts", hosts_file(plan));
  const std::string resolv = resolv_conf(plan);
  if (!resolv.empty()) replace_file(etc / "resolv.conf", resolv);
  return true;
}

}  // namespace fcvm::agent
