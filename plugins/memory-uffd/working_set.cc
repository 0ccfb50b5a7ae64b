#include "working_set.h"

#include <nlohmann/json.hpp>

#include "fcvm/atomic_file.h"

namespace fcvm::uffd {

namespace fs = std::filesystem;

namespace {

nlohmann::json identity_json(const ImageIdentity& id) {
  return {{"dev", id.dev}, {"ino", id.ino}, {"size", id.size}, {"mtime_ns", id.mtime_ns}};
}

}  // namespace

std::optional<WorkingSet> WorkingSet::load(const fs::path& snapshot_dir, const ImageIdentity& current) {
  auto text = read_file(snapshot_dir / kFileName);
  if (!text) return std::nullopt;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || j.value("version", 0) != kVersion) return std::nullopt;
  if (j.value("image", nlohmann::json()) != identity_json(current)) return std::nullopt;
  WorkingSet set;
  set.image = current;
  const auto it = j.find("offsets");
  if (it == j.end() || !it->is_array()) return std::nullopt;
  for (const auto& o : *it) {
    if (!o.is_number_unsigned() || o.get<std::uint64_t>() >= current.size) return std::nullopt;
    set.offsets.push_back(o.get<std::uint64_t>());
  }
  return set;
}

Status WorkingSet::save(const fs::path& snapshot_dir) const {
  nlohmann::json j = {{"version", kVersion}, {"image", identity_json(image)}, {"offsets", offsets}};
  return write_file_atomic(snapshot_dir / kFileName, j.dump(), 0600);
}

WorkingSetRecorder::WorkingSetRecorder(ImageIdentity image, std::size_t max_pages,
                                       std::chrono::steady_clock::duration window)
    : max_pages_(max_pages), deadline_(std::chrono::steady_clock::now() + window) {
  set_.image = image;
}

void WorkingSetRecorder::touch(std::uint64_t image_offset) {
  if (closed_) return;
  if (set_.offsets.size() >= max_pages_ || std::chrono::steady_clock::now() > deadline_) {
    closed_ = true;
    return;
  }
  set_.offsets.push_back(image_offset);
}

std::optional<WorkingSet> WorkingSetRecorder::finish() {
  if (finished_) return std::nullopt;
  finished_ = closed_ = true;
  return std::move(set_);
}

}  // namespace fcvm::uffd
