#include <gtest/gtest.h>

#include <string>

#include "fcvm/storage.h"

namespace fcvm {
namespace {

const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(DigestHex, GivesTheHexOfASha256Digest) {
  EXPECT_EQ(digest_hex("sha256:" + kHex), kHex);
}

// The hex becomes a file name under the data dir: nothing else may pass.
TEST(DigestHex, RefusesAnythingButSha256AndSixtyFourLowercaseHexDigits) {
  std::string upper = kHex;
  upper[10] = 'A';
  for (const std::string& bad : {
           std::string(),
           kHex,                               // no algorithm
           "sha512:" + kHex,                   // another algorithm
           "SHA256:" + kHex,                   // algorithm names are lowercase
           "sha256:" + kHex.substr(1),         // 63 digits
           "sha256:" + kHex + "0",             // 65 digits
           "sha256:" + upper,                  // uppercase digit
           "sha256:../" + kHex.substr(3),      // a path
           "sha256:" + kHex.substr(0, 63) + "/",
       }) {
    EXPECT_EQ(digest_hex(bad), "") << bad;
  }
}

}  // namespace
}  // namespace fcvm
