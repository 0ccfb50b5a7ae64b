#include "supervise/output_relay.h"

#include <algorithm>
#include <utility>

namespace fcvm {

void send_output_credit(AgentChannel& agent, std::uint32_t session, std::uint64_t bytes) {
  while (bytes > 0) {
    const auto grant = static_cast<std::uint32_t>(std::min<std::uint64_t>(bytes, agent::kMaxCreditBytes));
    (void)agent.send(agent::FrameType::kCredit, session, agent::Credit{grant}.to_payload());
    bytes -= grant;
  }
}

Result<std::unique_ptr<OutputRelay>> OutputRelay::open(const Options& options, LoggerPtr log) {
  auto file = CappedLog::open(options.log, options.log_max_bytes);
  if (!file) return file.status();
  return std::unique_ptr<OutputRelay>(new OutputRelay(std::move(*file), options, std::move(log)));
}

OutputRelay::OutputRelay(CappedLog file, const Options& options, LoggerPtr log)
    : file_(std::move(file)), keep_startup_output_(options.keep_startup_output), log_(std::move(log)) {
  if (options.stdout_fd >= 0) sinks_[0] = std::make_unique<OutputSink>(options.stdout_fd);
  if (options.stderr_fd >= 0) sinks_[1] = std::make_unique<OutputSink>(options.stderr_fd);
  if (keep_startup_output_ > 0) startup_output_.emplace();
}

OutputRelay::Progress OutputRelay::relay(bool is_stderr, std::string_view bytes) {
  if (startup_output_) {
    startup_output_bytes_ += bytes.size();
    if (startup_output_bytes_ > keep_startup_output_) {
      log_->info("more than " + std::to_string(keep_startup_output_) +
                 " bytes of output before the startup snapshot: it is not taken");
      startup_output_.reset();
    } else if (!startup_output_->empty() && startup_output_->back().is_stderr == is_stderr) {
      startup_output_->back().bytes += bytes;
    } else {
      startup_output_->push_back({is_stderr, std::string(bytes)});
    }
  }
  return write(is_stderr, bytes, /*from_guest=*/true);
}

OutputRelay::Progress OutputRelay::replay(bool is_stderr, std::string_view bytes) {
  return write(is_stderr, bytes, /*from_guest=*/false);
}

OutputRelay::Progress OutputRelay::write(bool is_stderr, std::string_view bytes, bool from_guest) {
  if (Status st = file_.append(bytes); !st.ok() && !std::exchange(file_failed_, true)) {
    log_->warn("container log: " + st.message());
  }
  OutputSink* out = sink(is_stderr);
  if (!out || broken_) return Progress{from_guest ? bytes.size() : 0, false};
  if (from_guest && out->queued() + bytes.size() > kMaxQueuedOutput) {
    log_->warn("the guest sent output beyond its window; dropped " + std::to_string(bytes.size()) +
               " bytes");
    return {};
  }
  if (!from_guest) replayed_[is_stderr] += bytes.size();
  return after_write(is_stderr, out->write(bytes));
}

OutputRelay::Progress OutputRelay::flush(bool is_stderr) {
  OutputSink* out = sink(is_stderr);
  return out ? after_write(is_stderr, out->flush()) : Progress{};
}

OutputRelay::Progress OutputRelay::after_write(bool is_stderr, std::size_t done) {
  // Replayed bytes go out first and were never the guest's to be credited for.
  std::uint64_t& replayed = replayed_[is_stderr];
  const std::uint64_t not_owed = std::min<std::uint64_t>(replayed, done);
  replayed -= not_owed;
  Progress progress{done - not_owed, false};
  if (sink(is_stderr)->broken() && !broken_) {
    broken_ = true;
    progress.reader_left = true;
  }
  return progress;
}

void OutputRelay::drain() {
  for (const auto& out : sinks_) {
    if (out) out->drain();
  }
}

int OutputRelay::poll_fd(bool is_stderr) const {
  OutputSink* out = sink(is_stderr);
  return out ? out->poll_fd() : -1;
}

bool OutputRelay::wants_write(bool is_stderr) const {
  OutputSink* out = sink(is_stderr);
  return out && out->queued() > 0;
}

}  // namespace fcvm
