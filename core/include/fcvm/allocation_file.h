// AllocationFile: a small JSON document of who holds what (subnets, loopback addresses,
// host ports), shared by every fcvm process through an exclusive lock (flock on FILE.lock).
//
// A plugin keeps its file where its resources' scope is: under its data dir for what is one
// data dir's, in /run for what is the whole host's (addresses, interfaces, nft tables), so
// fcvm processes with other data dirs see it. Every read-modify-write runs under the lock, so
// two processes never hand out the same slot. Writes are atomic (temp + fsync + rename),
// files 0600, the dir 0700. Threading: update() blocks until the lock is free.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "fcvm/result.h"
#include "fcvm/visibility.h"

namespace fcvm {

class FCVM_SDK_API AllocationFile {
 public:
  explicit AllocationFile(std::filesystem::path path) : path_(std::move(path)) {}

  // Locks, loads the document ({"version":1,"holders":{}} when absent), runs `change` on it
  // and, when `change` returns ok, saves it. A failed `change` leaves the file as it was.
  // The lock is held while `change` runs: keep other cross-process steps (nft) inside it.
  Status update(const std::function<Status(nlohmann::json& doc)>& change);

  // The lowest slot in [0, capacity) that no holder in doc["holders"] has as "slot".
  static std::optional<std::uint32_t> lowest_free_slot(const nlohmann::json& doc, std::uint32_t capacity);

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace fcvm
