// UffdClient: one VMM served by the page server: its userfaultfd, its regions, which pages
// it already has, the ranges its guest gave back (UFFD_EVENT_REMOVE), and its counters.
//
// Threading: used only from the server's event-loop thread. Every method that talks to
// the uffd may fail with a Status that concerns this client alone (the server drops it).
#pragma once

#include <linux/userfaultfd.h>
#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <vector>

#include "fcvm/log.h"
#include "fcvm/memory.h"
#include "fcvm/result.h"
#include "fcvm/unique_fd.h"
#include "guest_region.h"
#include "mapped_image.h"

namespace fcvm::uffd {

class UffdClient {
 public:
  // Called with the image offset of every page the guest faults on first (not pages filled
  // around it or pushed by prefetch): the working-set recorder.
  using FirstTouch = std::function<void(std::uint64_t image_offset)>;

  // `uffd` must be registered (MISSING mode) over `regions` in process `pid`, with
  // UFFD_FEATURE_EVENT_REMOVE; it is switched to non-blocking. `image` must outlive this.
  // `chunk_bytes` (a power of two) is how much around a fault is filled.
  UffdClient(pid_t pid, UniqueFd uffd, UniqueFd pidfd, UniqueFd socket,
             std::vector<GuestRegion> regions, const MappedImage& image,
             std::size_t chunk_bytes, LoggerPtr log);

  pid_t pid() const { return stats_.pid; }
  int uffd() const { return uffd_.get(); }
  // Readable once the VMM process has exited.
  int pidfd() const { return pidfd_.get(); }
  const std::vector<GuestRegion>& regions() const { return regions_; }
  // Ranges [start, end) of the VMM's addresses its guest removed: served as zeros.
  const std::map<std::uint64_t, std::uint64_t>& removed() const { return removed_; }
  MemoryClientStats& stats() { return stats_; }
  const MemoryClientStats& stats() const { return stats_; }

  void set_first_touch(FirstTouch hook) { first_touch_ = std::move(hook); }
  // Called after each remove event has been applied (to persist removed()).
  void set_on_remove(std::function<void()> hook) { on_remove_ = std::move(hook); }

  // Marks ranges removed before this server saw them (from a dead server's record).
  void restore_removed(const std::map<std::uint64_t, std::uint64_t>& removed);

  // Reads every queued event and resolves it: faults with UFFDIO_COPY (or UFFDIO_ZEROPAGE
  // in removed ranges), removes by forgetting the pages. Returns once the uffd is empty.
  Status handle_events();
  // Faults read but not resolved: a copy met EAGAIN because a remove was being queued, and
  // nothing new was readable then. The remover's thread may finish before it queues
  // anything else, so the owner retries on a timer (retry_faults), not only on readability.
  bool has_unresolved_faults() const { return !pending_.empty(); }
  Status retry_faults() { return handle_events(); }

  // Queues pages to push before the guest asks (image offsets, in the order to push).
  void set_prefetch(std::vector<std::uint64_t> image_offsets);
  bool prefetch_pending() const { return prefetch_next_ < prefetch_.size(); }
  // Pushes the chunks around up to `max_offsets` queued offsets; skips pages present.
  Status prefetch_some(std::size_t max_offsets);

  // Wakes every thread waiting on a fault in any region: after adoption, faults a dead
  // server read but never resolved are raised again.
  Status wake_all();

 private:
  struct Bitmap {
    std::vector<std::uint64_t> words;
    bool test(std::uint64_t i) const { return words[i / 64] >> (i % 64) & 1; }
    void set(std::uint64_t i) { words[i / 64] |= std::uint64_t{1} << (i % 64); }
    void clear(std::uint64_t i) { words[i / 64] &= ~(std::uint64_t{1} << (i % 64)); }
  };

  // Reads what the uffd holds into pending_ (non-blocking). Removes are applied at once,
  // so a retried copy sees them whatever order the kernel queued them in.
  Status drain();
  // Resolves the faults read so far, oldest first.
  Status process_pending();
  void apply_remove(std::uint64_t start, std::uint64_t end);
  bool is_removed(std::uint64_t addr) const;
  Status resolve_fault(std::uint64_t addr);
  // Fills the not-yet-present pages of region `r` in [from, to) (offsets in the region).
  // Sets `hit_present` when page `watch` turned out to be present already.
  Status fill(std::size_t r, std::uint64_t from, std::uint64_t to, bool prefetch,
              std::uint64_t watch, bool& hit_present);
  // One UFFDIO_COPY or UFFDIO_ZEROPAGE of a run of absent pages, retried through EAGAIN.
  Status fill_run(std::size_t r, std::uint64_t from, std::uint64_t to, bool zero, bool prefetch,
                  std::uint64_t watch, bool& hit_present);
  Status wake(std::uint64_t addr, std::uint64_t len);
  const GuestRegion* region_of(std::uint64_t addr, std::size_t& index) const;

  UniqueFd uffd_, pidfd_, socket_;
  std::vector<GuestRegion> regions_;
  std::vector<Bitmap> present_;  // per region, per page
  std::map<std::uint64_t, std::uint64_t> removed_;
  std::deque<uffd_msg> pending_;  // faults read but not yet resolved
  std::vector<std::uint64_t> prefetch_;
  std::size_t prefetch_next_ = 0;
  // Set when a copy met EAGAIN and the remove behind it was not readable yet: the caller
  // stops and retries once the uffd is readable again.
  bool busy_ = false;
  const MappedImage& image_;
  std::size_t chunk_bytes_;
  LoggerPtr log_;
  MemoryClientStats stats_;
  FirstTouch first_touch_;
  std::function<void()> on_remove_;
};

}  // namespace fcvm::uffd
