// ImageIndex: the image store's on-disk index under <data_dir>/images: refs.json (reference
// -> digest) and each image's <hex>/image.json record. It reads and writes those files only;
// the caller holds the store's lock (.lock) around every use, as ImageStore does.
//
// Threading: no mutable state; safe from any thread under the caller's lock. Never throws.
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "fcvm/result.h"
#include "image/image_store.h"

namespace fcvm {

using ImageRefMap = std::map<std::string, std::string>;  // reference -> "sha256:<hex>"

// Format version of refs.json and image.json.
inline constexpr int kImageRecordVersion = 1;

// True for a non-empty run of lowercase hex digits.
bool is_lower_hex(std::string_view s);
// Parses a JSON file; Errc::protocol names a malformed one.
Result<nlohmann::json> read_json_file(const std::filesystem::path& path);

class ImageIndex {
 public:
  explicit ImageIndex(std::filesystem::path root) : root_(std::move(root)) {}

  std::filesystem::path lock_path() const { return root_ / ".lock"; }
  std::filesystem::path refs_path() const { return root_ / "refs.json"; }
  std::filesystem::path image_dir(const std::string& hex) const { return root_ / hex; }

  // Creates the store's directory if missing.
  Status ensure_root() const;
  // The references; empty when refs.json does not exist yet.
  Result<ImageRefMap> read_refs() const;
  // Replaces refs.json atomically.
  Status write_refs(const ImageRefMap& refs) const;
  // Reads <hex>/image.json and attaches the references pointing at it.
  Result<StoredImage> load(const std::string& hex, const ImageRefMap& refs) const;
  // Hex names of stored images starting with `prefix`, sorted.
  std::vector<std::string> find_by_prefix(std::string_view prefix) const;

  // What `ref_or_digest` names: a reference's digest, or a stored image found by prefix.
  struct Target {
    std::string hex;
    std::string reference;  // set when found as a reference
  };
  Result<Target> find(const std::string& ref_or_digest, const ImageRefMap& refs) const;

 private:
  std::filesystem::path root_;
};

}  // namespace fcvm
