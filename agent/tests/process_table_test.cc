#include "process_table.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "test_dir.h"

namespace fcvm::agent {
namespace {

TEST(ProcessTable, ListsAChildWithItsParentUserAndCommandButNotItself) {
  TestDir dir;
  std::ofstream(dir.path() / "passwd") << "tester:x:" << ::getuid() << ":0::/root:/bin/sh\nbroken line\n";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::vector<ProcessRow> rows;
  for (int tries = 0; tries < 100; ++tries) {  // until the child has exec'd
    rows = read_process_table("/proc", dir.path() / "passwd", ::getpid());
    const bool execd = std::any_of(rows.begin(), rows.end(),
                                   [&](const ProcessRow& r) { return r.pid == child && r.command == "sleep 30"; });
    if (execd) break;
    ::usleep(10000);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);

  const auto row = std::find_if(rows.begin(), rows.end(), [&](const ProcessRow& r) { return r.pid == child; });
  ASSERT_NE(row, rows.end());
  EXPECT_EQ(row->command, "sleep 30");
  EXPECT_EQ(row->ppid, ::getpid());
  EXPECT_EQ(row->user, "tester");
  EXPECT_GE(row->elapsed_s, 0);
  EXPECT_TRUE(std::none_of(rows.begin(), rows.end(), [](const ProcessRow& r) { return r.pid == ::getpid(); }));
  EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.pid < b.pid; }));

  const std::string table = format_process_table({*row});
  EXPECT_EQ(table.rfind("USER", 0), 0u) << table;
  EXPECT_NE(table.find("PID"), std::string::npos);
  EXPECT_NE(table.find("sleep 30\n"), std::string::npos) << table;
}

}  // namespace
}  // namespace fcvm::agent
