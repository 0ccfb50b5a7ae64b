// network-none-example: a network backend that gives a VM no network at all.
//
// The smallest complete plugin: one backend class, a factory that reads the plugin's own
// config object, and the exported descriptor. Choose it with
//   fcvm --plugin-dir <dir with the .so> --network network-none-example ...
// and configure it in the config file under plugin_config."network-none-example".
#include <fcvm/network.h>
#include <fcvm/plugin.h>

namespace {

class NoNetwork final : public fcvm::NetworkBackend {
 public:
  NoNetwork(fcvm::LoggerPtr log, std::string note) : log_(std::move(log)), note_(std::move(note)) {}

  fcvm::Probe probe() override {
    // Needs nothing from the host. The reason tells `fcvm plugins` what this backend does.
    return fcvm::Probe::yes("VMs get no network (" + note_ + ")");
  }

  fcvm::Result<fcvm::NetworkLease> setup(const fcvm::NetworkRequest& request) override {
    log_->debug("no network for " + request.name);
    fcvm::NetworkLease lease;
    lease.plugin = "network-none-example";  // an empty tap: the VMM adds no NIC
    return lease;
  }

  fcvm::Status attach(fcvm::NetworkLease&, pid_t) override { return fcvm::ok_status(); }

  fcvm::Result<fcvm::NetworkLease> setup_clone(const fcvm::NetworkLease&,
                                               const fcvm::NetworkRequest& request) override {
    return setup(request);
  }

  // Nothing was created, so there is nothing to remove; idempotent by construction.
  fcvm::Status teardown(const fcvm::NetworkLease&) override { return fcvm::ok_status(); }

 private:
  fcvm::LoggerPtr log_;  // already tagged "network-none-example" by fcvm
  std::string note_;
};

// Errors go back as a Status naming the setting and the fix; nothing escapes as an exception.
fcvm::Result<std::unique_ptr<fcvm::Backend>> create(const fcvm::PluginContext& ctx) {
  std::string note = "offline by design";
  if (auto it = ctx.config.find("note"); it != ctx.config.end()) {
    if (!it->is_string()) {
      return fcvm::error(fcvm::Errc::invalid_argument,
                         "plugin_config.network-none-example.note: expected a string");
    }
    note = it->get<std::string>();
  }
  return fcvm::make_backend<NoNetwork>(ctx.log, std::move(note));
}

}  // namespace

FCVM_DECLARE_PLUGIN(fcvm::PluginKind::network, "network-none-example", EXAMPLE_VERSION,
                    "example third-party plugin: VMs get no network", &create)
