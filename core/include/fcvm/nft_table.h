// NftTable: fcvm's nftables table in one network namespace, driven through libnftables.
//
// The table is shared: each VM adds its own chains (named after the VM) and deletes exactly
// those. Every apply() is one netlink transaction, so a failed script changes nothing.
// Threading: one thread at a time. Cross-process: nftables transactions are atomic, but
// "delete the table when it holds no chains" races with another process adding chains, so
// callers serialise add/delete with their own lock.
// Cleanup: the destructor frees the context only; tables and chains stay until deleted.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fcvm/netns.h"
#include "fcvm/result.h"
#include "fcvm/visibility.h"

struct nft_ctx;

namespace fcvm {

class FCVM_SDK_API NftTable {
 public:
  NftTable(NftTable&&) noexcept;
  NftTable& operator=(NftTable&&) noexcept;
  ~NftTable();

  // A handle on table `family name` (e.g. "ip", "fcvm") in the calling thread's namespace,
  // or in `ns`. Creates nothing. unavailable when nf_tables cannot be used (no kernel
  // support or no CAP_NET_ADMIN).
  static Result<NftTable> open(const std::string& family, const std::string& name);
  static Result<NftTable> open_in(const Netns& ns, const std::string& family, const std::string& name);

  const std::string& family() const { return family_; }
  const std::string& name() const { return name_; }

  // Runs an nft script (nft(8) syntax) as one transaction; "add table" for this table is
  // prepended, so scripts may add chains straight away. The error names the failing line.
  Status apply(const std::string& script);
  // Names of this table's chains; empty when the table does not exist.
  Result<std::vector<std::string>> chains();
  // Deletes the named chains (flushing their rules first) in one transaction; chains
  // already gone are skipped. Idempotent.
  Status delete_chains(const std::vector<std::string>& names);
  // Deletes the table if it has no chains left. Idempotent.
  Status delete_if_empty();
  // The table's ruleset as nft prints it ("" when it does not exist), for logs and tests.
  Result<std::string> list();

 private:
  NftTable(std::string family, std::string name) : family_(std::move(family)), name_(std::move(name)) {}
  Result<std::string> run(const std::string& commands, bool json_output);

  std::optional<Netns> ns_;
  nft_ctx* ctx_ = nullptr;
  std::string family_;
  std::string name_;
};

}  // namespace fcvm
