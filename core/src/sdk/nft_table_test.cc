#include "fcvm/nft_table.h"

#include <gtest/gtest.h>

#include "net_test_support.h"

namespace fcvm {
namespace {

using testing::is_root;

TEST(NftTable, ChainsAreAddedListedAndDeletedExactly) {
  if (!is_root()) GTEST_SKIP() << "needs root (CAP_NET_ADMIN) for nftables";
  auto ns = Netns::create_anonymous();  // a private ruleset: the host's is never touched
  ASSERT_TRUE(ns.ok());
  auto table = NftTable::open_in(*ns, "ip", "fcvm");
  ASSERT_TRUE(table.ok()) << table.status().message();
  EXPECT_TRUE(table->chains()->empty()) << "no table yet";
  ASSERT_TRUE(table->apply("add chain ip fcvm vm_a_post { type nat hook postrouting priority 100; }\n"
                           "add rule ip fcvm vm_a_post ip saddr 10.9.0.2 masquerade\n"
                           "add chain ip fcvm vm_b_post { type nat hook postrouting priority 100; }\n")
                  .ok());
  auto chains = table->chains();
  ASSERT_TRUE(chains.ok());
  EXPECT_EQ(*chains, (std::vector<std::string>{"vm_a_post", "vm_b_post"}));
  ASSERT_TRUE(table->delete_chains({"vm_a_post", "vm_gone"}).ok());
  EXPECT_EQ(*table->chains(), std::vector<std::string>{"vm_b_post"});
  ASSERT_TRUE(table->delete_if_empty().ok());
  EXPECT_NE(table->list()->find("vm_b_post"), std::string::npos) << "a table with chains stays";
  ASSERT_TRUE(table->delete_chains({"vm_b_post"}).ok());
  ASSERT_TRUE(table->delete_if_empty().ok());
  EXPECT_EQ(*table->list(), "");
  EXPECT_TRUE(table->delete_if_empty().ok()) << "idempotent";
}

TEST(NftTable, AFailingScriptChangesNothing) {
  if (!is_root()) GTEST_SKIP() << "needs root (CAP_NET_ADMIN) for nftables";
  auto ns = Netns::create_anonymous();
  ASSERT_TRUE(ns.ok());
  auto table = NftTable::open_in(*ns, "ip", "fcvm");
  ASSERT_TRUE(table.ok());
  Status st = table->apply("add chain ip fcvm vm_c_out { type nat hook output priority -100; }\n"
                           "add rule ip fcvm vm_c_out tcp dport 80 frobnicate\n");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("nft:"), std::string::npos) << st.message();
  EXPECT_TRUE(table->chains()->empty());
  EXPECT_EQ(*table->list(), "");
}

TEST(NftTable, BadNamesAreRefused) {
  EXPECT_EQ(NftTable::open("ip", "fc vm").status().code(), Errc::invalid_argument);
}

}  // namespace
}  // namespace fcvm
