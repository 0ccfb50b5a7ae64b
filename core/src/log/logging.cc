#include "log/logging.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/core/null_deleter.hpp>
#include <boost/log/attributes/constant.hpp>
#include <boost/log/attributes/value_extraction.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions/message.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/sources/record_ostream.hpp>
#include <boost/log/sources/severity_logger.hpp>
#include <boost/log/utility/formatting_ostream.hpp>
#include <boost/smart_ptr/make_shared_object.hpp>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>

namespace fcvm {
namespace {

namespace blog = boost::log;

// The level filter; read on every line, so an atomic rather than a sink-filter rebuild.
std::atomic<int> g_level{static_cast<int>(LogLevel::warning)};

using Sink = blog::sinks::synchronous_sink<blog::sinks::text_ostream_backend>;

// The one sink and the stream it writes to, guarded by g_sink_mutex. g_installed lets the
// write path skip the mutex once the sink exists.
std::mutex g_sink_mutex;
boost::shared_ptr<Sink> g_sink;
boost::shared_ptr<std::ostream> g_stream;
std::atomic<bool> g_installed{false};
std::atomic<bool> g_colour{false};

const char* level_colour(LogLevel level) {
  switch (level) {
    case LogLevel::error: return "\033[1;31m";
    case LogLevel::warning: return "\033[1;33m";
    case LogLevel::info: return "\033[1;36m";
    case LogLevel::debug:
    case LogLevel::trace: return "\033[2m";
  }
  return "";
}

bool stderr_wants_colour() {
  const char* no_colour = std::getenv("NO_COLOR");
  if (no_colour != nullptr && *no_colour != '\0') return false;
  return ::isatty(STDERR_FILENO) == 1;
}

void format_line(const blog::record_view& rec, blog::formatting_ostream& out) {
  const LogLevel level = blog::extract_or_default<LogLevel>("Severity", rec, LogLevel::info);
  const bool colour = g_colour.load(std::memory_order_relaxed);
  out << "fcvm: ";
  if (colour) out << level_colour(level);
  out << to_string(level);
  if (colour) out << "\033[0m";
  out << ": ";
  if (auto tags = blog::extract<std::string>("Tag", rec); tags && !tags->empty()) {
    out << *tags << ": ";
  }
  out << rec[blog::expressions::smessage];
}

// Points the sink at `stream`, creating the sink on first use. Caller holds g_sink_mutex.
void set_stream_locked(boost::shared_ptr<std::ostream> stream, bool colour) {
  g_colour.store(colour, std::memory_order_relaxed);
  if (!g_sink) {
    auto backend = boost::make_shared<blog::sinks::text_ostream_backend>();
    backend->auto_flush(true);
    g_sink = boost::make_shared<Sink>(backend);
    g_sink->set_filter([](const blog::attribute_value_set& values) {
      auto level = blog::extract<LogLevel>("Severity", values);
      return level && static_cast<int>(*level) >= g_level.load(std::memory_order_relaxed);
    });
    g_sink->set_formatter(&format_line);
    blog::core::get()->add_sink(g_sink);
  }
  auto backend = g_sink->locked_backend();
  if (g_stream) backend->remove_stream(g_stream);
  g_stream = std::move(stream);
  backend->add_stream(g_stream);
  g_installed.store(true, std::memory_order_release);
}

boost::shared_ptr<std::ostream> stderr_stream() {
  return boost::shared_ptr<std::ostream>(&std::cerr, boost::null_deleter());
}

void ensure_installed() {
  if (g_installed.load(std::memory_order_acquire)) return;
  std::lock_guard lock(g_sink_mutex);
  if (!g_installed.load(std::memory_order_relaxed)) {
    set_stream_locked(stderr_stream(), stderr_wants_colour());
  }
}

// A Logger writing through Boost.Log. `tags_` is the chain joined with ": ", attached to
// every record as the constant attribute "Tag".
class BoostLogger final : public Logger {
 public:
  explicit BoostLogger(std::string tags) : tags_(std::move(tags)) {
    if (!tags_.empty()) source_.add_attribute("Tag", blog::attributes::constant<std::string>(tags_));
  }

  void write(LogLevel level, std::string_view message) const override {
    if (!enabled(level)) return;
    try {
      ensure_installed();
      blog::record rec = source_.open_record(blog::keywords::severity = level);
      if (!rec) return;
      blog::record_ostream stream(rec);
      stream << escape_control_chars(message);
      stream.flush();
      source_.push_record(std::move(rec));
    } catch (...) {
      // Logging must never take the caller down; a line lost to a broken stream is the cost.
    }
  }

  bool enabled(LogLevel level) const override {
    return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
  }

  std::shared_ptr<const Logger> child(std::string_view tag) const override {
    return std::make_shared<BoostLogger>(tags_.empty() ? std::string(tag)
                                                       : tags_ + ": " + std::string(tag));
  }

 private:
  std::string tags_;
  // The _mt source is internally locked, so one BoostLogger may be shared by threads.
  mutable blog::sources::severity_logger_mt<LogLevel> source_;
};

}  // namespace

void init_logging(LogLevel level) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
  ensure_installed();
}

void init_logging(LogLevel level, std::ostream& stream, bool colour) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
  std::lock_guard lock(g_sink_mutex);
  set_stream_locked(boost::shared_ptr<std::ostream>(&stream, boost::null_deleter()), colour);
}

LoggerPtr root_logger() {
  static const LoggerPtr root = std::make_shared<BoostLogger>("");
  return root;
}

LogLevel current_log_level() { return static_cast<LogLevel>(g_level.load()); }

std::string escape_control_chars(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  auto escape = [&](unsigned char c) {
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
    // Raw bytes 0x80-0x9f are left alone: they continue UTF-8 sequences ("€" is e2 82 ac).
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
      escape(c);
    } else if (c == 0xc2 && next >= 0x80 && next <= 0x9f) {  // C1 control as UTF-8
      escape(next);
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace fcvm
