#include "guest_region.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace fcvm::uffd {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kImage = 1 << 20;

Status parse_error(const std::string& message) {
  auto r = parse_handshake(message, kImage, kPage);
  return r ? ok_status() : r.status();
}

TEST(Handshake, ParsesFirecrackersCurrentForm) {
  auto r = parse_handshake(
      R"([{"base_host_virt_addr":1052672,"size":8192,"offset":4096,"page_size":4096,"page_size_kib":4096},
          {"base_host_virt_addr":65536,"size":4096,"offset":0,"page_size":4096,"page_size_kib":4096}])",
      kImage, kPage);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0], (GuestRegion{65536, 4096, 0, 4096})) << "sorted by base";
  EXPECT_EQ((*r)[1], (GuestRegion{1052672, 8192, 4096, 4096}));
}

TEST(Handshake, AcceptsTheOldThreeFieldFormAndPageSizeKibAlone) {
  auto old = parse_handshake(R"([{"base_host_virt_addr":4096,"size":4096,"offset":0}])", kImage, kPage);
  ASSERT_TRUE(old.ok()) << old.status().message();
  EXPECT_EQ((*old)[0].page_size, kPage);
  auto kib = parse_handshake(R"([{"base_host_virt_addr":8192,"size":8192,"offset":0,"page_size_kib":8192}])",
                             kImage, kPage);
  ASSERT_TRUE(kib.ok()) << kib.status().message();
  EXPECT_EQ((*kib)[0].page_size, 8192u);
}

TEST(Handshake, RoundTripsThroughTheRecordForm) {
  GuestRegion r{1 << 21, 1 << 16, 4096, 4096};
  auto back = regions_from_json(nlohmann::json::array({r.to_json()}), kImage, kPage);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ((*back)[0], r);
}

TEST(Handshake, RejectsEachMalformedMessageNamingTheProblem) {
  const std::pair<const char*, const char*> cases[] = {
      {"not json", "not valid JSON"},
      {"{}", "non-empty JSON array"},
      {"[]", "non-empty JSON array"},
      {"[1]", "not a JSON object"},
      {R"([{"size":4096,"offset":0}])", "missing field base_host_virt_addr"},
      {R"([{"base_host_virt_addr":-4096,"size":4096,"offset":0}])", "not an unsigned integer"},
      {R"([{"base_host_virt_addr":"4096","size":4096,"offset":0}])", "not an unsigned integer"},
      {R"([{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":3000}])", "power of two"},
      {R"([{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":2048}])", "power of two"},
      {R"([{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":4096,"page_size_kib":4}])",
       "disagree"},
      {R"([{"base_host_virt_addr":4096,"size":0,"offset":0}])", "zero or absurd"},
      {R"([{"base_host_virt_addr":4096,"size":2199023255552,"offset":0}])", "zero or absurd"},
      {R"([{"base_host_virt_addr":4097,"size":4096,"offset":0}])", "multiple of the page size"},
      {R"([{"base_host_virt_addr":4096,"size":4096,"offset":100}])", "multiple of the page size"},
      {R"([{"base_host_virt_addr":18446744073709547520,"size":8192,"offset":0}])", "wraps"},
      {R"([{"base_host_virt_addr":4096,"size":4096,"offset":1048576}])", "outside the 1048576-byte"},
      {R"([{"base_host_virt_addr":4096,"size":2097152,"offset":0}])", "outside"},
      {R"([{"base_host_virt_addr":4096,"size":4096,"offset":18446744073709547520}])", "outside"},
      {R"([{"base_host_virt_addr":4096,"size":8192,"offset":0},{"base_host_virt_addr":8192,"size":4096,"offset":0}])",
       "overlap"},
  };
  for (const auto& [message, expected] : cases) {
    Status st = parse_error(message);
    EXPECT_EQ(st.code(), Errc::protocol) << message;
    EXPECT_THAT(st.message(), HasSubstr(expected)) << message;
  }
}

TEST(Handshake, RejectsTooManyRegions) {
  nlohmann::json many = nlohmann::json::array();
  for (int i = 0; i < 65; ++i) {
    many.push_back({{"base_host_virt_addr", (i + 1) * kPage}, {"size", kPage}, {"offset", 0}});
  }
  Status st = parse_error(many.dump());
  EXPECT_THAT(st.message(), HasSubstr("65 regions; at most 64"));
  many.erase(many.end() - 1);
  EXPECT_TRUE(parse_error(many.dump()).ok());
}

}  // namespace
}  // namespace fcvm::uffd
