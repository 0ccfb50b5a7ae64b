// StderrLogger: a Logger for the test tools and tests of memory-uffd (core owns the real
// sinks; these programs run without core). Lines go to stderr, "tag: message".
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "fcvm/log.h"

namespace fcvm::uffd::testing {

class StderrLogger final : public Logger, public std::enable_shared_from_this<StderrLogger> {
 public:
  explicit StderrLogger(std::string tag, LogLevel level = LogLevel::info)
      : tag_(std::move(tag)), level_(level) {}
  void write(LogLevel level, std::string_view message) const override {
    if (enabled(level)) std::fprintf(stderr, "%s: %.*s\n", tag_.c_str(), int(message.size()), message.data());
  }
  bool enabled(LogLevel level) const override { return level >= level_; }
  std::shared_ptr<const Logger> child(std::string_view tag) const override {
    return std::make_shared<StderrLogger>(tag_ + ": " + std::string(tag), level_);
  }

 private:
  std::string tag_;
  LogLevel level_;
};

}  // namespace fcvm::uffd::testing
