#include "state/process_identity.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace fcvm {
namespace {

// 52 fields as the kernel writes them; field 22 (starttime) is 987654.
std::string stat_line(const std::string& comm, char state = 'S') {
  std::string line = "4242 (" + comm + ") " + state +
                     " 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
  for (int i = 25; i <= 52; ++i) line += " 0";
  return line + "\n";
}

TEST(ParseProcStat, PlainCommand) {
  auto st = parse_proc_stat(stat_line("fcvm"));
  ASSERT_TRUE(st.ok()) << st.status().message();
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->start_time, 987654u);
}

TEST(ParseProcStat, CommandWithSpacesAndParentheses) {
  for (const char* comm : {"a b", "x) S 1 2 3", "((", ") ) )", "qemu (vm 1)"}) {
    auto st = parse_proc_stat(stat_line(comm, 'R'));
    ASSERT_TRUE(st.ok()) << comm << ": " << st.status().message();
    EXPECT_EQ(st->state, 'R') << comm;
    EXPECT_EQ(st->start_time, 987654u) << comm;
  }
}

TEST(ParseProcStat, RejectsMalformedLines) {
  EXPECT_FALSE(parse_proc_stat("").ok());
  EXPECT_FALSE(parse_proc_stat("4242 (no close paren S 1 2").ok());
  EXPECT_FALSE(parse_proc_stat("4242 (short) S 1 2 3").ok());
  std::string bad = stat_line("x");
  bad.replace(bad.find("987654"), 6, "98x654");
  EXPECT_FALSE(parse_proc_stat(bad).ok());
}

TEST(ProcessIdentity, SelfIsAlive) {
  const auto me = ProcessIdentity::self();
  EXPECT_EQ(me.pid, ::getpid());
  EXPECT_GT(me.start_time, 0u);
  EXPECT_TRUE(me.alive());
  auto again = ProcessIdentity::of(::getpid());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, me);
}

TEST(ProcessIdentity, ReusedPidWithOtherStartTimeIsDead) {
  // What a record looks like after its process died and the kernel gave the PID to another
  // process: same PID, different start time.
  auto me = ProcessIdentity::self();
  me.start_time += 1;
  EXPECT_FALSE(me.alive());
  me.start_time -= 2;
  EXPECT_FALSE(me.alive());
}

TEST(ProcessIdentity, NoPidIsNeverAlive) {
  EXPECT_FALSE((ProcessIdentity{0, 0}).alive());
  EXPECT_FALSE((ProcessIdentity{-1, 0}).alive());
}

TEST(ProcessIdentity, ZombieAndReapedChildAreDead) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ::_exit(0);
  }
  auto running = ProcessIdentity::of(child);
  ASSERT_TRUE(running.ok());
  EXPECT_TRUE(running->alive());

  // Exited but not reaped: a zombie keeps its /proc entry and start time, yet is dead.
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(running->alive());

  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(running->alive());
  EXPECT_EQ(ProcessIdentity::of(child).status().code(), Errc::not_found);
}

}  // namespace
}  // namespace fcvm
