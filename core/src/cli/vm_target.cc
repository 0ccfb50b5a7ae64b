#include "cli/vm_target.h"

#include "state/state_store.h"

namespace fcvm::cli {

VmRecord find_vm(CommandContext& ctx, const std::optional<std::string>& name_or_id,
                 const std::optional<int>& pid) {
  if (name_or_id.has_value() == pid.has_value()) {
    throw CliError("name a VM, or give --pid N (not both)", kUsageExit);
  }
  auto record = name_or_id ? ctx.state().find(*name_or_id) : ctx.state().find_by_pid(*pid);
  if (!record) {
    throw CliError(record.status().message() +
                   (record.status().code() == Errc::not_found ? " (see 'fcvm ls')" : ""));
  }
  return *record;
}

VmRecord find_running_vm(CommandContext& ctx, const boost::program_options::variables_map& options) {
  std::optional<std::string> name;
  std::optional<int> pid;
  if (options.count("name")) name = options["name"].as<std::string>();
  if (options.count("pid")) pid = options["pid"].as<int>();
  VmRecord record = find_vm(ctx, name, pid);
  if (!record.alive() || record.status != VmStatus::running) throw CliError(record.name + " is not running");
  return record;
}

Result<control::ControlClient> connect_control(const VmRecord& record) {
  auto client = control::ControlClient::connect(record.vm_dir / "control.sock");
  if (!client) {
    if (client.status().message().find("Permission denied") != std::string::npos) {
      return client.status().with_context(
          "cannot reach " + record.name +
          " (the VM belongs to another user: run this as that user or as root): ");
    }
    return client.status().with_context("cannot reach " + record.name +
                                        " (is its container still starting?): ");
  }
  return client;
}

control::Reply ask_vm(const VmRecord& record, const control::Request& request,
                      std::chrono::milliseconds timeout, const std::string& what) {
  auto client = check(connect_control(record));
  check(client.send_request(request));
  auto reply = check(client.wait_reply(timeout));
  if (!reply.ok()) throw CliError(what + ": " + *reply.error);
  return reply;
}

}  // namespace fcvm::cli
