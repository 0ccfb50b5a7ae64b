#include "bridged_network.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "fcvm/host_port.h"
#include "fcvm/ipv4_cidr.h"
#include "fcvm/netns.h"
#include "fcvm/nft_table.h"
#include "fcvm/route_netlink.h"
#include "fcvm/tap_device.h"
#include "fcvm/veth.h"

namespace fcvm::bridged {
namespace {

constexpr const char* kTable = "fcvm";
constexpr const char* kNsVeth = "veth0";

std::optional<std::uint32_t> parse_ipv4(const std::string& text) {
  in_addr a{};
  if (::inet_pton(AF_INET, text.c_str(), &a) != 1) return std::nullopt;
  return ntohl(a.s_addr);
}

std::string format_ipv4(std::uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

std::vector<std::string> host_nameservers() {
  std::vector<std::string> out;
  std::ifstream in("/etc/resolv.conf");
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string key, value;
    if (!(words >> key >> value) || key != "nameserver") continue;
    auto addr = parse_ipv4(value);
    if (addr && (*addr >> 24) != 127) out.push_back(value);
  }
  return out;
}

Status keep_first(Status first, Status next) { return first.ok() ? next : first; }

}  // namespace

Result<Options> Options::from_json(const nlohmann::json& config) {
  Options o;
  const std::string where = std::string("plugin_config.") + kPluginName + ".";
  auto bad = [&](const std::string& key, const std::string& why) {
    return error(Errc::invalid_argument, where + key + ": " + why);
  };
  try {
    if (config.contains("pool")) o.pool_text = config["pool"].get<std::string>();
    if (config.contains("guest_address")) o.guest_address = config["guest_address"].get<std::string>();
    if (config.contains("guest_gateway")) o.guest_gateway = config["guest_gateway"].get<std::string>();
    if (config.contains("dns")) o.dns = config["dns"].get<std::vector<std::string>>();
    else o.dns = host_nameservers();
    if (config.contains("mtu")) o.mtu = config["mtu"].get<unsigned>();
    if (config.contains("ip_forward")) o.ip_forward = config["ip_forward"].get<bool>();
  } catch (const nlohmann::json::exception& e) {
    return error(Errc::invalid_argument, where + "*: " + e.what());
  }
  auto pool = parse_ipv4_cidr(o.pool_text);
  if (!pool) return bad("pool", pool.status().message() + "; expected a range from /8 to /30 such as 172.30.0.0/16");
  if (pool->prefix > 30 || pool->prefix < 8) {
    return bad("pool", "'" + o.pool_text + "' is not an IPv4 range from /8 to /30 such as 172.30.0.0/16");
  }
  if ((pool->address & ~pool->mask()) != 0) {
    return bad("pool", "'" + o.pool_text + "' has host bits set; use its network address");
  }
  o.pool_base = pool->address;
  o.pool_prefix = pool->prefix;
  auto guest = parse_ipv4_cidr(o.guest_address);
  if (!guest) return bad("guest_address", guest.status().message() + "; such as 10.0.2.15/24");
  if (guest->prefix > 30) return bad("guest_address", "expected a prefix of /30 or shorter, such as 10.0.2.15/24");
  auto gw = parse_ipv4(o.guest_gateway);
  if (!gw || (*gw & guest->mask()) != (guest->address & guest->mask()) || *gw == guest->address) {
    return bad("guest_gateway", "must be another address in guest_address's subnet");
  }
  for (const auto& d : o.dns) {
    if (!parse_ipv4(d)) return bad("dns", "'" + d + "' is not an IPv4 address");
  }
  if (o.mtu < 576 || o.mtu > 65520) return bad("mtu", "expected 576-65520");
  return o;
}

BridgedNetwork::BridgedNetwork(std::filesystem::path allocations, Options options, LoggerPtr log)
    : options_(std::move(options)), log_(std::move(log)), allocations_(std::move(allocations)) {}

Probe BridgedNetwork::probe() {
  if (::geteuid() != 0) {
    return Probe::no("needs root (it creates network namespaces, veths and nftables rules); "
                     "without root use --network network-slirp");
  }
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
    return Probe::no("/dev/net/tun is missing; load the tun module (modprobe tun)");
  }
  auto nft = NftTable::open("ip", kTable);
  if (!nft) return Probe::no(nft.status().message());
  return Probe::yes("netns + veth + tap per VM, /30s from " + options_.pool_text + ", nftables NAT");
}

std::string BridgedNetwork::host_rules(const std::string& vm_id, const BridgedState& st,
                                       const std::vector<PortMapping>& ports) {
  const std::string t = std::string("ip ") + kTable + " ";
  const std::string pre = "vm_" + vm_id + "_pre", out = "vm_" + vm_id + "_out", post = "vm_" + vm_id + "_post";
  std::string s;
  s += "add chain " + t + pre + " { type nat hook prerouting priority -100; }\n";
  s += "add chain " + t + out + " { type nat hook output priority -100; }\n";
  s += "add chain " + t + post + " { type nat hook postrouting priority 100; }\n";
  for (const auto& p : ports) {
    // Locally generated packets never pass prerouting, so the host itself needs output.
    const std::string match = p.host_ip == "0.0.0.0" ? "fib daddr type local" : "ip daddr " + p.host_ip;
    const std::string rule = match + " " + p.proto + " dport " + std::to_string(p.host_port) + " dnat to " +
                             st.ns_ip + ":" + std::to_string(p.guest_port) + "\n";
    s += "add rule " + t + pre + " " + rule;
    s += "add rule " + t + out + " " + rule;
  }
  // Clients on 127.0.0.0/8 would get no reply from the namespace: give them the host end.
  s += "add rule " + t + post + " oifname \"" + st.host_veth + "\" ip saddr 127.0.0.0/8 masquerade\n";
  s += "add rule " + t + post + " ip saddr " + st.ns_ip + " oifname != \"" + st.host_veth + "\" masquerade\n";
  return s;
}

Result<NetworkLease> BridgedNetwork::setup(const NetworkRequest& request) {
  GuestNetwork guest;
  guest.mac = random_guest_mac();
  guest.address = options_.guest_address;
  guest.gateway = options_.guest_gateway;
  guest.dns = options_.dns;
  guest.mtu = options_.mtu;
  return create(request, guest, "tap0");
}

Result<NetworkLease> BridgedNetwork::setup_clone(const NetworkLease& snapshot_lease, const NetworkRequest& request) {
  if (snapshot_lease.tap.empty() || snapshot_lease.guest.address.empty()) {
    return error(Errc::invalid_argument, "the snapshot's network lease has no tap or guest address");
  }
  // The guest's address, gateway and MAC live on in its memory; only the host side is new.
  return create(request, snapshot_lease.guest, snapshot_lease.tap);
}

Result<NetworkLease> BridgedNetwork::create(const NetworkRequest& request, GuestNetwork guest,
                                            const std::string& tap) {
  if (request.vm_id.empty() || request.vm_id.size() > 12 ||
      request.vm_id.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyz") != std::string::npos) {
    return error(Errc::invalid_argument, "network-bridged: vm id '" + request.vm_id + "' is not 1-12 of [a-z0-9]");
  }
  for (const auto& p : request.ports) {
    FCVM_RETURN_IF_ERROR(check_host_port_free(p));
  }
  const auto guest_cidr = parse_ipv4_cidr(guest.address);
  if (!guest_cidr) return guest_cidr.status().with_context("network-bridged: guest address ");

  BridgedState st;
  st.netns = "fcvm-" + request.vm_id;
  st.host_veth = "fv" + request.vm_id;
  NetworkLease lease;
  lease.plugin = kPluginName;
  lease.tap = tap;
  lease.guest = guest;
  lease.ports = request.ports;
  lease.namespaces = {Netns::named_path(st.netns)};

  std::uint32_t slot = 0;
  FCVM_RETURN_IF_ERROR(allocations_.update([&](nlohmann::json& doc) -> Status {
    for (const auto& [holder, entry] : doc["holders"].items()) {
      std::vector<PortMapping> ports;
      try {
        if (entry.is_object()) ports = entry.value("ports", std::vector<PortMapping>{});
      } catch (const nlohmann::json::exception&) {
        return error(Errc::protocol, std::string(kHostAllocations) + ": holder " + holder +
                                         " is corrupt; remove the file once no VM runs");
      }
      for (const auto& taken : ports) {
        for (const auto& mine : request.ports) {
          if (host_ports_overlap(taken, mine)) {
            return error(Errc::already_exists, "host port " + mine.host_ip + ":" + std::to_string(mine.host_port) +
                                                   "/" + mine.proto + " is published by VM " +
                                                   entry.value("name", holder) + "; pick another -p host port");
          }
        }
      }
    }
    auto free = lowest_free_subnet(doc);
    if (!free) {
      return error(Errc::unavailable, "network-bridged: the pool " + options_.pool_text + " is exhausted (" +
                                          std::to_string(options_.capacity()) +
                                          " /30s in use); run 'fcvm gc' or set plugin_config.network-bridged.pool "
                                          "to a larger range");
    }
    slot = *free;
    doc["holders"][request.vm_id] = {{"subnet", format_ipv4(options_.pool_base + 4 * slot) + "/30"},
                                     {"name", request.name},
                                     {"ports", request.ports}};
    return ok_status();
  }));
  const std::uint32_t base = options_.pool_base + 4 * slot;
  st.subnet = format_ipv4(base) + "/30";
  st.host_ip = format_ipv4(base + 1);
  st.ns_ip = format_ipv4(base + 2);
  st.chains = {"vm_" + request.vm_id + "_pre", "vm_" + request.vm_id + "_out", "vm_" + request.vm_id + "_post"};
  lease.extra = st;
  lease.extra["vm_id"] = request.vm_id;

  // From here every failure tears down through the lease, which names all there is.
  auto built = [&]() -> Status {
    auto ns = Netns::create_named(st.netns);
    if (!ns) return ns.status();
    ns->release();
    auto veth = Veth::create(st.host_veth, kNsVeth, *ns);
    if (!veth) return veth.status();
    veth->release();
    auto rt = RouteNetlink::open();
    if (!rt) return rt.status();
    FCVM_RETURN_IF_ERROR(rt->add_address(st.host_veth, st.host_ip + "/30"));
    FCVM_RETURN_IF_ERROR(rt->link_up(st.host_veth));
    // 127.0.0.0/8 clients of published ports leave through the veth (then masqueraded).
    FCVM_RETURN_IF_ERROR(write_sysctl("net.ipv4.conf." + st.host_veth + ".route_localnet", "1"));
    FCVM_RETURN_IF_ERROR(write_sysctl("net.ipv4.conf." + st.host_veth + ".forwarding", "1"));

    auto tap_dev = TapDevice::create(*ns, tap, guest.mtu);
    if (!tap_dev) return tap_dev.status();
    tap_dev->release();
    const std::string guest_net = format_ipv4(guest_cidr->address & guest_cidr->mask()) + "/" +
                                  std::to_string(guest_cidr->prefix);
    FCVM_RETURN_IF_ERROR(ns->run_in([&] {
      auto inner = RouteNetlink::open();
      if (!inner) return inner.status();
      FCVM_RETURN_IF_ERROR(inner->link_up("lo"));
      FCVM_RETURN_IF_ERROR(inner->add_address(kNsVeth, st.ns_ip + "/30"));
      FCVM_RETURN_IF_ERROR(inner->link_up(kNsVeth));
      FCVM_RETURN_IF_ERROR(inner->add_address(tap, guest.gateway + "/" + std::to_string(guest_cidr->prefix)));
      FCVM_RETURN_IF_ERROR(inner->add_default_route(kNsVeth, st.host_ip));
      return write_sysctl("net.ipv4.ip_forward", "1");  // the namespace's own
    }));
    auto ns_nft = NftTable::open_in(*ns, "ip", kTable);
    if (!ns_nft) return ns_nft.status();
    FCVM_RETURN_IF_ERROR(ns_nft->apply(
        "add chain ip fcvm pre { type nat hook prerouting priority -100; }\n"
        "add rule ip fcvm pre iifname \"" + std::string(kNsVeth) + "\" ip daddr " + st.ns_ip + " dnat to " +
        format_ipv4(guest_cidr->address) + "\n"
        "add chain ip fcvm post { type nat hook postrouting priority 100; }\n"
        "add rule ip fcvm post oifname \"" + kNsVeth + "\" ip saddr " + guest_net + " masquerade\n"));

    FCVM_RETURN_IF_ERROR(allocations_.update([&](nlohmann::json&) -> Status {
      auto host_nft = NftTable::open("ip", kTable);
      if (!host_nft) return host_nft.status();
      return host_nft->apply(host_rules(request.vm_id, st, request.ports));
    }));
    if (options_.ip_forward) {
      auto fwd = read_sysctl("net.ipv4.ip_forward");
      if (fwd && *fwd == "0") {
        FCVM_RETURN_IF_ERROR(write_sysctl("net.ipv4.ip_forward", "1"));
        log_->warn("set net.ipv4.ip_forward=1 for the guest's egress (plugin_config." + std::string(kPluginName) +
                   ".ip_forward=false leaves it alone)");
      }
    }
    return ok_status();
  }();
  if (!built.ok()) {
    if (Status undone = teardown(lease); !undone.ok()) log_->warn("cleanup after failed setup: " + undone.message());
    return built.with_context("network-bridged: ");
  }
  log_->debug("VM " + request.name + ": " + st.netns + ", " + st.subnet);
  return lease;
}

std::optional<std::uint32_t> BridgedNetwork::lowest_free_subnet(const nlohmann::json& doc) const {
  // By address, not by index: processes with other data dirs may use other pools.
  std::set<std::uint32_t> taken;
  for (const auto& [holder, entry] : doc["holders"].items()) {
    if (!entry.is_object() || !entry.contains("subnet") || !entry["subnet"].is_string()) continue;
    auto subnet = parse_ipv4_cidr(entry["subnet"].get<std::string>());
    if (subnet) taken.insert(subnet->address & ~3u);
  }
  for (std::uint32_t slot = 0; slot < options_.capacity(); ++slot) {
    if (!taken.count(options_.pool_base + 4 * slot)) return slot;
  }
  return std::nullopt;
}

Status BridgedNetwork::attach(NetworkLease&, pid_t) { return ok_status(); }

Status BridgedNetwork::teardown(const NetworkLease& lease) {
  // A lease whose setup never recorded anything holds nothing.
  if (lease.extra.empty()) return ok_status();
  BridgedState st;
  std::string vm_id;
  try {
    st = lease.extra.get<BridgedState>();
    vm_id = lease.extra.at("vm_id").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    return error(Errc::invalid_argument, std::string("network-bridged: unreadable lease: ") + e.what());
  }
  // Everything under the allocation lock: the subnet is free again only once nothing of
  // this VM holds it, and no other process adds chains while the table may be deleted.
  return allocations_.update([&](nlohmann::json& doc) -> Status {
    Status result;
    if (!st.chains.empty()) {
      auto nft = NftTable::open("ip", kTable);
      if (nft) {
        result = keep_first(result, nft->delete_chains(st.chains));
        result = keep_first(result, nft->delete_if_empty());
      } else {
        result = nft.status();
      }
    }
    if (!st.host_veth.empty()) result = keep_first(result, Veth::remove(st.host_veth));
    if (!st.netns.empty()) result = keep_first(result, Netns::remove_named(st.netns));
    if (result.ok()) doc["holders"].erase(vm_id);
    return result.ok() ? result : result.with_context("network-bridged teardown: ");
  });
}

}  // namespace fcvm::bridged
