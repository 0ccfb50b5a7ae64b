#include "image/image_index.h"

#include "config/config.h"

#include <algorithm>

#include "fcvm/atomic_file.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

}  // namespace

bool is_lower_hex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

Result<json> read_json_file(const fs::path& path) {
  auto text = read_file(path);
  if (!text) return text.status();
  json doc = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return error(Errc::protocol, path.string() + ": not valid JSON");
  return doc;
}

Status ImageIndex::ensure_root() const {
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) return error(Errc::io, "create " + root_.string() + ": " + ec.message());
  return ok_status();
}

Result<ImageRefMap> ImageIndex::read_refs() const {
  if (!fs::exists(refs_path())) return ImageRefMap{};
  auto doc = read_json_file(refs_path());
  if (!doc) return doc.status();
  try {
    return doc->at("refs").get<ImageRefMap>();
  } catch (const json::exception& e) {
    return error(Errc::protocol, refs_path().string() + " is malformed (" + json_error_text(e) +
                                     "); remove it and pull your images again");
  }
}

Status ImageIndex::write_refs(const ImageRefMap& refs) const {
  json doc = {{"version", kImageRecordVersion}, {"refs", refs}};
  return write_file_atomic(refs_path(), doc.dump(2) + "\n");
}

Result<StoredImage> ImageIndex::load(const std::string& hex, const ImageRefMap& refs) const {
  const fs::path dir = image_dir(hex);
  auto doc = read_json_file(dir / "image.json");
  if (!doc) return doc.status();
  StoredImage image;
  try {
    image.digest = doc->at("digest").get<std::string>();
    image.size_bytes = doc->value("size_bytes", std::uint64_t{0});
    image.pulled = doc->value("pulled", "");
    image.config = doc->value("config", ImageConfig{});
  } catch (const json::exception& e) {
    return error(Errc::protocol, (dir / "image.json").string() + " is malformed (" +
                                     json_error_text(e) + "); remove " + dir.string() +
                                     " and pull the image again");
  }
  image.dir = dir;
  for (const auto& [ref, digest] : refs) {
    if (digest == image.digest) image.refs.push_back(ref);
  }
  return image;
}

std::vector<std::string> ImageIndex::find_by_prefix(std::string_view prefix) const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() == 64 && is_lower_hex(name) && name.compare(0, prefix.size(), prefix) == 0 &&
        entry.is_directory()) {
      out.push_back(std::move(name));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<ImageIndex::Target> ImageIndex::find(const std::string& ref_or_digest,
                                          const ImageRefMap& refs) const {
  if (auto canon = ImageStore::canonical_reference(ref_or_digest)) {
    auto it = refs.find(*canon);
    if (it == refs.end()) return error(Errc::not_found, "no image is stored for " + *canon);
    return Target{digest_hex(it->second), *canon};
  }
  std::string_view prefix = ref_or_digest;
  if (prefix.substr(0, 7) == "sha256:") prefix.remove_prefix(7);
  if (!is_lower_hex(prefix)) {
    return error(Errc::not_found, "no image matches \"" + ref_or_digest +
                                      "\": give a reference (" + kImageReferenceForms +
                                      ") or a digest prefix");
  }
  auto matches = find_by_prefix(prefix);
  if (matches.empty())
    return error(Errc::not_found, "no image has a digest starting with " + std::string(prefix));
  if (matches.size() > 1) {
    return error(Errc::invalid_argument, "digest prefix " + std::string(prefix) + " matches " +
                                             std::to_string(matches.size()) +
                                             " images; give more digits");
  }
  return Target{matches.front(), {}};
}

}  // namespace fcvm
