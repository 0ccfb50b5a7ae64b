#include "log/logging.h"

#include <gtest/gtest.h>

#include <iostream>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

namespace fcvm {
namespace {

// Points the sink at a string stream for one test and back at stderr afterwards.
class LoggingTest : public ::testing::Test {
 protected:
  void TearDown() override { init_logging(LogLevel::warning, std::cerr, false); }

  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    std::istringstream in(out_.str());
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  std::ostringstream out_;
};

TEST_F(LoggingTest, LinesCarryLevelAndTagChain) {
  init_logging(LogLevel::info, out_, false);
  auto vm = root_logger()->child("vm web1");
  auto qemu = vm->child("qemu");
  qemu->warn("QMP connected");
  vm->info("booted");
  root_logger()->error("plain");
  EXPECT_EQ(lines(), (std::vector<std::string>{"fcvm: warning: vm web1: qemu: QMP connected",
                                               "fcvm: info: vm web1: booted",
                                               "fcvm: error: plain"}));
}

TEST_F(LoggingTest, LevelFilterDropsLowerLevels) {
  init_logging(LogLevel::warning, out_, false);
  auto log = root_logger()->child("t");
  EXPECT_FALSE(log->enabled(LogLevel::info));
  EXPECT_TRUE(log->enabled(LogLevel::warning));
  log->debug("no");
  log->info("no");
  log->warn("yes");
  EXPECT_EQ(lines(), std::vector<std::string>{"fcvm: warning: t: yes"});

  // A logger made earlier obeys a later level change.
  init_logging(LogLevel::debug, out_, false);
  EXPECT_TRUE(log->enabled(LogLevel::debug));
  log->debug("now");
  EXPECT_EQ(lines().back(), "fcvm: debug: t: now");
  EXPECT_EQ(current_log_level(), LogLevel::debug);
}

TEST_F(LoggingTest, ColourWrapsOnlyTheLevelWord) {
  init_logging(LogLevel::info, out_, true);
  root_logger()->child("x")->warn("m");
  EXPECT_EQ(lines(), std::vector<std::string>{"fcvm: \033[1;33mwarning\033[0m: x: m"});
}

TEST_F(LoggingTest, ConcurrentWritersNeverInterleaveLines) {
  init_logging(LogLevel::info, out_, false);
  constexpr int kThreads = 8, kLines = 300;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      auto log = root_logger()->child("thread " + std::to_string(t));
      for (int i = 0; i < kLines; ++i) log->info("line " + std::to_string(i) + " of thread");
    });
  }
  for (auto& th : threads) th.join();
  const auto got = lines();
  ASSERT_EQ(got.size(), static_cast<size_t>(kThreads * kLines));
  const std::regex shape("fcvm: info: thread [0-9]+: line [0-9]+ of thread");
  for (const auto& line : got) ASSERT_TRUE(std::regex_match(line, shape)) << line;
}

TEST(LogLevelNames, ParseAndPrint) {
  for (LogLevel l : {LogLevel::trace, LogLevel::debug, LogLevel::info, LogLevel::warning,
                     LogLevel::error}) {
    EXPECT_EQ(parse_log_level(to_string(l)), l);
  }
  EXPECT_EQ(parse_log_level("warn"), LogLevel::warning);
  EXPECT_EQ(parse_log_level("WARNING"), std::nullopt);
  EXPECT_EQ(parse_log_level(""), std::nullopt);
}

// Text from a guest reaches logs and terminals: escape sequences must arrive inert.
TEST(Logging, ControlCharactersAreEscaped) {
  EXPECT_EQ(escape_control_chars("plain text, tab\tand\nnewline"), "plain text, tab\tand\nnewline");
  EXPECT_EQ(escape_control_chars("\x1b[2J\x1b]0;owned\x07\r\x7f"),
            "\\x1b[2J\\x1b]0;owned\\x07\\x0d\\x7f");
  EXPECT_EQ(escape_control_chars("csi \xc2\x9b" "31m"), "csi \\x9b31m");
  EXPECT_EQ(escape_control_chars("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");
  EXPECT_EQ(escape_control_chars(std::string("nul\0byte", 8)), "nul\\x00byte");

  std::ostringstream sink;
  init_logging(LogLevel::info, sink, false);
  root_logger()->warn("agent: \x1b[31mred");
  init_logging(LogLevel::warning, std::cerr, false);
  EXPECT_NE(sink.str().find("agent: \\x1b[31mred"), std::string::npos) << sink.str();
  EXPECT_EQ(sink.str().find('\x1b'), std::string::npos);
}

}  // namespace
}  // namespace fcvm
