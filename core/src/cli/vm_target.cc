#include "cli/vm_target.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "state/state_store.h"

namespace fcvm::cli {

VmRecord find_vm(CommandContext& ctx, const std::optional<std::string>& name_or_id,
                 const std::optional<int>& pid) {
  if (name_or_id.has_value() == pid.has_value()) {
    throw CliError("name a VM, or give --pid N (not both)", kUsageExit);
  }
  auto record = name_or_id ? ctx.state().find(*name_or_id) : ctx.state().find_by_pid(*pid);
  if (!record) throw CliError(record.status().message() + " (see 'fcvm ls')");
  return *record;
}

Result<UniqueFd> connect_control(const VmRecord& record) {
  const auto path = (record.vm_dir / "control.sock").string();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return error(Errc::invalid_argument, "control socket path too long: " + path);
  std::copy(path.begin(), path.end(), addr.sun_path);
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return error(Errc::unavailable, "cannot reach " + record.name + " at " + path + ": " +
                                        std::strerror(errno) + " (is its container still starting?)");
  }
  return fd;
}

}  // namespace fcvm::cli
