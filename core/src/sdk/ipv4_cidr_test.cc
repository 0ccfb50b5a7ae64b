#include "fcvm/ipv4_cidr.h"

#include <gtest/gtest.h>

namespace fcvm {
namespace {

TEST(Ipv4Cidr, ParsesAddressAndPrefix) {
  auto c = parse_ipv4_cidr("10.0.2.15/24");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->address, 0x0a00020fu);
  EXPECT_EQ(c->prefix, 24);
  EXPECT_EQ(c->mask(), 0xffffff00u);
  EXPECT_EQ(c->address_text(), "10.0.2.15");
  EXPECT_EQ(parse_ipv4_cidr("0.0.0.0/0")->mask(), 0u);
  EXPECT_EQ(parse_ipv4_cidr("172.30.0.2/32")->mask(), 0xffffffffu);
}

TEST(Ipv4Cidr, RefusesWhatStoiWouldHaveAcceptedOrThrownOn) {
  for (const char* text : {"10.0.2.15", "10.0.2.15/", "10.0.2.15/24x", "10.0.2.15/ 24", "10.0.2.15/+24",
                           "10.0.2.15/-1", "10.0.2.15/33", "10.0.2.15/99999999999", "10.0.2/24", "host/24",
                           "/24", ""}) {
    auto c = parse_ipv4_cidr(text);
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_EQ(c.status().code(), Errc::invalid_argument) << text;
    EXPECT_NE(c.status().message().find(std::string("'") + text + "'"), std::string::npos) << c.status().message();
  }
  EXPECT_NE(parse_ipv4_cidr("10.0.2.15/33").status().message().find("from 0 to 32"), std::string::npos);
  EXPECT_NE(parse_ipv4_cidr("10.0.2.15").status().message().find("no '/N'"), std::string::npos);
}

}  // namespace
}  // namespace fcvm
