// WorkingSet: the pages the first clone of a snapshot touched right after its restore, in
// first-touch order, so later clones get them pushed before they fault (REAP, ASPLOS'21).
//
// The record lives in the snapshot's directory as `memory-uffd.working-set.json`, carries
// the identity (device, inode, size, mtime) of the memory image it was made from, and is
// ignored, then rewritten, when the image no longer matches.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "fcvm/result.h"
#include "mapped_image.h"

namespace fcvm::uffd {

struct WorkingSet {
  static constexpr int kVersion = 1;
  static constexpr const char* kFileName = "memory-uffd.working-set.json";

  ImageIdentity image;
  std::vector<std::uint64_t> offsets;  // image offsets of pages, first touch first

  // nullopt when there is no record, it is unreadable, or it was made for another image
  // (all mean: record anew).
  static std::optional<WorkingSet> load(const std::filesystem::path& snapshot_dir,
                                        const ImageIdentity& current);
  // Atomic write (0600).
  Status save(const std::filesystem::path& snapshot_dir) const;
};

// Collects the first client's first touches, bounded in count and in time since the
// handshake (the restore window); closed() once either bound is reached.
class WorkingSetRecorder {
 public:
  WorkingSetRecorder(ImageIdentity image, std::size_t max_pages,
                     std::chrono::steady_clock::duration window);
  void touch(std::uint64_t image_offset);
  bool closed() const { return closed_; }
  // Ends recording; returns the record (once; later calls return nullopt).
  std::optional<WorkingSet> finish();

 private:
  WorkingSet set_;
  std::size_t max_pages_;
  std::chrono::steady_clock::time_point deadline_;
  bool closed_ = false;
  bool finished_ = false;
};

}  // namespace fcvm::uffd
