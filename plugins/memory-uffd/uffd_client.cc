#include "uffd_client.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <string>

namespace fcvm::uffd {
namespace {

std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::uint64_t(ts.tv_sec) * 1'000'000'000 + std::uint64_t(ts.tv_nsec);
}

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

UffdClient::UffdClient(pid_t pid, UniqueFd uffd, UniqueFd pidfd, UniqueFd socket,
                       std::vector<GuestRegion> regions, const MappedImage& image,
                       std::size_t chunk_bytes, LoggerPtr log)
    : uffd_(std::move(uffd)),
      pidfd_(std::move(pidfd)),
      socket_(std::move(socket)),
      regions_(std::move(regions)),
      image_(image),
      chunk_bytes_(chunk_bytes),
      log_(std::move(log)) {
  stats_.pid = pid;
  stats_.connected = true;
  for (const auto& r : regions_) present_.push_back(Bitmap{std::vector<std::uint64_t>((r.pages() + 63) / 64)});
  // The VMM never reads its uffd, so sharing O_NONBLOCK with it is harmless.
  ::fcntl(uffd_.get(), F_SETFL, ::fcntl(uffd_.get(), F_GETFL) | O_NONBLOCK);
}

const GuestRegion* UffdClient::region_of(std::uint64_t addr, std::size_t& index) const {
  auto it = std::upper_bound(regions_.begin(), regions_.end(), addr,
                             [](std::uint64_t a, const GuestRegion& r) { return a < r.base; });
  if (it == regions_.begin()) return nullptr;
  --it;
  if (!it->contains(addr)) return nullptr;
  index = static_cast<std::size_t>(it - regions_.begin());
  return &*it;
}

bool UffdClient::is_removed(std::uint64_t addr) const {
  auto it = removed_.upper_bound(addr);
  if (it == removed_.begin()) return false;
  --it;
  return addr < it->second;
}

void UffdClient::restore_removed(const std::map<std::uint64_t, std::uint64_t>& removed) {
  for (auto [start, end] : removed) apply_remove(start, end);
}

void UffdClient::apply_remove(std::uint64_t start, std::uint64_t end) {
  if (end <= start) return;
  // Merge into the interval map.
  auto it = removed_.upper_bound(start);
  if (it != removed_.begin() && std::prev(it)->second >= start) --it;
  while (it != removed_.end() && it->first <= end) {
    start = std::min(start, it->first);
    end = std::max(end, it->second);
    it = removed_.erase(it);
  }
  removed_.emplace(start, end);
  for (std::size_t i = 0; i < regions_.size(); ++i) {
    const auto& r = regions_[i];
    const std::uint64_t s = std::max(start, r.base), e = std::min(end, r.end());
    for (std::uint64_t a = s; a < e; a += r.page_size) present_[i].clear((a - r.base) / r.page_size);
  }
}

Status UffdClient::drain() {
  uffd_msg msgs[32];
  for (;;) {
    const ssize_t n = ::read(uffd_.get(), msgs, sizeof msgs);
    if (n < 0) {
      if (errno == EAGAIN) return ok_status();
      if (errno == EINTR) continue;
      return errno_status("read uffd of pid " + std::to_string(pid()));
    }
    if (n == 0 || n % sizeof(uffd_msg) != 0) {
      return error(Errc::protocol, "short read from uffd of pid " + std::to_string(pid()));
    }
    for (ssize_t i = 0; i < n / ssize_t(sizeof(uffd_msg)); ++i) {
      const uffd_msg& m = msgs[i];
      if (m.event == UFFD_EVENT_PAGEFAULT) {
        pending_.push_back(m);
      } else if (m.event == UFFD_EVENT_REMOVE) {
        ++stats_.remove_events;
        apply_remove(m.arg.remove.start, m.arg.remove.end);
        if (on_remove_) on_remove_();
      } else {
        log_->debug("pid " + std::to_string(pid()) + ": ignoring uffd event " +
                    std::to_string(m.event));
      }
    }
    // A short read emptied the queue: skip the read that would only say EAGAIN (a later
    // event makes the uffd readable again).
    if (std::size_t(n) < sizeof msgs) return ok_status();
  }
}

Status UffdClient::handle_events() {
  FCVM_RETURN_IF_ERROR(drain());
  return process_pending();
}

Status UffdClient::process_pending() {
  while (!pending_.empty()) {
    FCVM_RETURN_IF_ERROR(resolve_fault(pending_.front().arg.pagefault.address));
    // A remove is on its way: the fault stays first in line until the uffd, readable once
    // the remove is queued, or the server's retry timer brings us back.
    if (std::exchange(busy_, false)) return ok_status();
    pending_.pop_front();
  }
  return ok_status();
}

Status UffdClient::resolve_fault(std::uint64_t addr) {
  const std::uint64_t t0 = now_ns();
  std::size_t ri = 0;
  const GuestRegion* r = region_of(addr, ri);
  if (!r) {
    return error(Errc::protocol, "pid " + std::to_string(pid()) + " faulted at " + hex(addr) +
                                     ", outside every region it registered");
  }
  const std::uint64_t off = (addr - r->base) & ~(r->page_size - 1);
  const std::uint64_t page = off / r->page_size;
  bool hit_present = present_[ri].test(page);
  const bool first_touch = !hit_present;
  if (first_touch) {
    const std::uint64_t chunk = std::max<std::uint64_t>(chunk_bytes_, r->page_size);
    const std::uint64_t from = off & ~(chunk - 1);
    FCVM_RETURN_IF_ERROR(fill(ri, from, std::min(from + chunk, r->size), false, page, hit_present));
    if (busy_) return ok_status();
  }
  ++stats_.faults;
  if (first_touch && first_touch_ && !is_removed(r->base + off)) first_touch_(r->offset + off);
  // Another vCPU's fault (or a dead server) already filled it: the copy that did woke only
  // its own waiters, so wake this one.
  if (hit_present) FCVM_RETURN_IF_ERROR(wake(r->base + off, r->page_size));
  const std::uint64_t us = (now_ns() - t0) / 1000;
  const std::size_t bucket = us == 0 ? 0 : std::min<std::size_t>(std::bit_width(us) - 1,
                                                                 MemoryClientStats::kLatencyBuckets - 1);
  ++stats_.latency_us_log2[bucket];
  return ok_status();
}

Status UffdClient::fill(std::size_t ri, std::uint64_t from, std::uint64_t to, bool prefetch,
                        std::uint64_t watch, bool& hit_present) {
  const GuestRegion& r = regions_[ri];
  std::uint64_t off = from;
  while (off < to) {
    if (present_[ri].test(off / r.page_size)) {
      off += r.page_size;
      continue;
    }
    const bool zero = is_removed(r.base + off);
    std::uint64_t end = off + r.page_size;
    while (end < to && !present_[ri].test(end / r.page_size) && is_removed(r.base + end) == zero) {
      end += r.page_size;
    }
    FCVM_RETURN_IF_ERROR(fill_run(ri, off, end, zero, prefetch, watch, hit_present));
    if (busy_) return ok_status();
    off = end;
  }
  return ok_status();
}

Status UffdClient::fill_run(std::size_t ri, std::uint64_t from, std::uint64_t to, bool zero,
                            bool prefetch, std::uint64_t watch, bool& hit_present) {
  const GuestRegion& r = regions_[ri];
  while (from < to) {
    // A remove drained during a retry may have taken (part of) the run: re-check.
    if (present_[ri].test(from / r.page_size)) {
      from += r.page_size;
      continue;
    }
    if (is_removed(r.base + from) != zero) return fill(ri, from, to, prefetch, watch, hit_present);
    std::int64_t done = 0;
    int rc = 0;
    if (zero) {
      uffdio_zeropage z{};
      z.range.start = r.base + from;
      z.range.len = to - from;
      rc = ::ioctl(uffd_.get(), UFFDIO_ZEROPAGE, &z);
      done = z.zeropage;
    } else {
      uffdio_copy c{};
      c.dst = r.base + from;
      c.src = reinterpret_cast<std::uint64_t>(image_.data() + r.offset + from);
      c.len = to - from;
      rc = ::ioctl(uffd_.get(), UFFDIO_COPY, &c);
      done = c.copy;
    }
    const int err = rc == 0 ? 0 : errno;
    if (done > 0) {
      const std::uint64_t pages = std::uint64_t(done) / r.page_size;
      for (std::uint64_t p = 0; p < pages; ++p) present_[ri].set(from / r.page_size + p);
      if (zero) {
        stats_.zero_pages += pages;
      } else {
        stats_.pages_copied += pages;
        stats_.bytes_copied += std::uint64_t(done);
        if (prefetch) stats_.prefetched_pages += pages;
      }
      from += std::uint64_t(done);
    }
    if (err == 0 || (err == EAGAIN && done > 0)) continue;
    if (err == EEXIST) {
      // The page is there already (a dead server's copy, or a race): skip it.
      const std::uint64_t page = from / r.page_size;
      present_[ri].set(page);
      if (page == watch) hit_present = true;
      from += r.page_size;
    } else if (err == EAGAIN) {
      // A remove is being queued: read it (so later copies see it) and retry; if it is not
      // readable yet, come back later (readability or the retry timer) rather than spin.
      ++stats_.eagain_retries;
      const std::size_t faults_before = pending_.size();
      const std::uint64_t removes_before = stats_.remove_events;
      FCVM_RETURN_IF_ERROR(drain());
      if (pending_.size() == faults_before && stats_.remove_events == removes_before) {
        busy_ = true;
        return ok_status();
      }
    } else if (err == ESRCH || err == ENOENT) {
      return error(Errc::not_found, "pid " + std::to_string(pid()) + " is gone");
    } else {
      return errno_status(std::string("pid ") + std::to_string(pid()) +
                              (zero ? ": UFFDIO_ZEROPAGE at " : ": UFFDIO_COPY at ") +
                              hex(r.base + from),
                          err);
    }
  }
  return ok_status();
}

Status UffdClient::wake(std::uint64_t addr, std::uint64_t len) {
  uffdio_range range{addr, len};
  if (::ioctl(uffd_.get(), UFFDIO_WAKE, &range) != 0) {
    return errno_status("pid " + std::to_string(pid()) + ": UFFDIO_WAKE at " + hex(addr));
  }
  return ok_status();
}

Status UffdClient::wake_all() {
  for (const auto& r : regions_) FCVM_RETURN_IF_ERROR(wake(r.base, r.size));
  return ok_status();
}

void UffdClient::set_prefetch(std::vector<std::uint64_t> image_offsets) {
  prefetch_ = std::move(image_offsets);
  prefetch_next_ = 0;
}

Status UffdClient::prefetch_some(std::size_t max_offsets) {
  for (std::size_t n = 0; n < max_offsets && prefetch_pending(); ++n) {
    const std::uint64_t image_off = prefetch_[prefetch_next_];
    for (std::size_t ri = 0; ri < regions_.size(); ++ri) {
      const auto& r = regions_[ri];
      if (image_off < r.offset || image_off - r.offset >= r.size) continue;
      const std::uint64_t chunk = std::max<std::uint64_t>(chunk_bytes_, r.page_size);
      const std::uint64_t from = (image_off - r.offset) & ~(chunk - 1);
      bool unused = false;
      FCVM_RETURN_IF_ERROR(fill(ri, from, std::min(from + chunk, r.size), true, ~0ull, unused));
      break;
    }
    if (std::exchange(busy_, false)) break;  // retried on the next turn
    ++prefetch_next_;
  }
  // Faults read while retrying must not wait for the next readiness: the uffd may be empty.
  return process_pending();
}

}  // namespace fcvm::uffd
