// Content hashes for cache keys (OpenSSL's SHA-256).
#pragma once

#include <string>
#include <string_view>

namespace fcvm {

// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

}  // namespace fcvm
