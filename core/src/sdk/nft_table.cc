#include "fcvm/nft_table.h"

#include <nftables/libnftables.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

namespace fcvm {
namespace {

bool valid_identifier(const std::string& s) {
  return !s.empty() && s.size() < 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

std::string first_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (auto nl = text.find('\n'); nl != std::string::npos) text = text.substr(0, nl);
  return text;
}

}  // namespace

NftTable::NftTable(NftTable&& o) noexcept
    : ns_(std::move(o.ns_)),
      ctx_(std::exchange(o.ctx_, nullptr)),
      family_(std::move(o.family_)),
      name_(std::move(o.name_)) {}

NftTable& NftTable::operator=(NftTable&& o) noexcept {
  if (this != &o) {
    if (ctx_) nft_ctx_free(ctx_);
    ns_ = std::move(o.ns_);
    ctx_ = std::exchange(o.ctx_, nullptr);
    family_ = std::move(o.family_);
    name_ = std::move(o.name_);
  }
  return *this;
}

NftTable::~NftTable() {
  if (ctx_) nft_ctx_free(ctx_);
}

Result<NftTable> NftTable::open(const std::string& family, const std::string& name) {
  if (!valid_identifier(family) || !valid_identifier(name)) {
    return error(Errc::invalid_argument, "bad nftables table '" + family + " " + name + "'");
  }
  NftTable table(family, name);
  table.ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!table.ctx_) return error(Errc::io, "nftables: cannot create a context");
  nft_ctx_buffer_output(table.ctx_);
  nft_ctx_buffer_error(table.ctx_);
  // Probe: listing needs nf_tables in the kernel and CAP_NET_ADMIN.
  auto probe = table.run("list tables", false);
  if (!probe) {
    return error(Errc::unavailable, "nftables unusable here (" + probe.status().message() +
                                        "); needs root or CAP_NET_ADMIN and nf_tables in the kernel");
  }
  return table;
}

Result<NftTable> NftTable::open_in(const Netns& ns, const std::string& family, const std::string& name) {
  auto handle = ns.duplicate();
  if (!handle) return handle.status();
  std::optional<NftTable> table;
  Status made = ns.run_in([&]() -> Status {
    auto t = open(family, name);
    if (!t) return t.status();
    table.emplace(std::move(*t));
    return ok_status();
  });
  if (!made.ok()) return made;
  table->ns_ = std::move(*handle);
  return std::move(*table);
}

Result<std::string> NftTable::run(const std::string& commands, bool json_output) {
  auto once = [&]() -> Result<std::string> {
    nft_ctx_output_set_flags(ctx_, json_output ? NFT_CTX_OUTPUT_JSON : 0);
    const int rc = nft_run_cmd_from_buffer(ctx_, commands.c_str());
    std::string out = nft_ctx_get_output_buffer(ctx_);
    std::string err = nft_ctx_get_error_buffer(ctx_);
    if (rc != 0) return error(Errc::io, "nft: " + first_line(err.empty() ? "failed" : err));
    return out;
  };
  if (!ns_) return once();
  Result<std::string> result = std::string();
  Status st = ns_->run_in([&] {
    result = once();
    return result.status();
  });
  if (!st.ok()) return st;
  return result;
}

Status NftTable::apply(const std::string& script) {
  return run("add table " + family_ + " " + name_ + "\n" + script, false).status();
}

Result<std::vector<std::string>> NftTable::chains() {
  auto out = run("list tables", true);
  if (!out) return out.status();
  std::vector<std::string> names;
  const auto has_table = [&](const nlohmann::json& doc) {
    const nlohmann::json items = doc.value("nftables", nlohmann::json::array());
    for (const auto& item : items) {
      if (item.contains("table") && item["table"].value("family", "") == family_ &&
          item["table"].value("name", "") == name_) {
        return true;
      }
    }
    return false;
  };
  auto tables = nlohmann::json::parse(*out, nullptr, false);
  if (tables.is_discarded()) return error(Errc::protocol, "nft: unreadable JSON listing");
  if (!has_table(tables)) return names;
  auto listed = run("list chains " + family_, true);
  if (!listed) return listed.status();
  auto doc = nlohmann::json::parse(*listed, nullptr, false);
  if (doc.is_discarded()) return error(Errc::protocol, "nft: unreadable JSON listing");
  const nlohmann::json items = doc.value("nftables", nlohmann::json::array());
  for (const auto& item : items) {
    if (!item.contains("chain")) continue;
    const auto& c = item["chain"];
    if (c.value("table", "") == name_ && c.value("family", "") == family_) {
      names.push_back(c.value("name", ""));
    }
  }
  return names;
}

Status NftTable::delete_chains(const std::vector<std::string>& names) {
  auto existing = chains();
  if (!existing) return existing.status();
  std::string script;
  for (const auto& n : names) {
    if (!valid_identifier(n)) return error(Errc::invalid_argument, "bad nftables chain name '" + n + "'");
    if (std::find(existing->begin(), existing->end(), n) == existing->end()) continue;
    script += "flush chain " + family_ + " " + name_ + " " + n + "\n";
    script += "delete chain " + family_ + " " + name_ + " " + n + "\n";
  }
  if (script.empty()) return ok_status();
  return run(script, false).status();
}

Status NftTable::delete_if_empty() {
  auto existing = chains();
  if (!existing) return existing.status();
  if (!existing->empty()) return ok_status();
  auto tables = run("list tables " + family_, false);
  if (!tables) return tables.status();
  if (tables->find("table " + family_ + " " + name_ + "\n") == std::string::npos) return ok_status();
  return run("delete table " + family_ + " " + name_, false).status();
}

Result<std::string> NftTable::list() {
  auto existing = run("list tables " + family_, false);
  if (!existing) return existing.status();
  if (existing->find("table " + family_ + " " + name_ + "\n") == std::string::npos) return std::string();
  return run("list table " + family_ + " " + name_, false);
}

}  // namespace fcvm
