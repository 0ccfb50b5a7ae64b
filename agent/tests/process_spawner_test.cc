#include "process_spawner.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>

#include "test_dir.h"

namespace fcvm::agent {
namespace {

// Reads a non-blocking pipe to EOF.
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 5000);
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EAGAIN) continue;
    return out;
  }
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(ProcessSpawner, RunsWithPipesEnvAndCwd) {
  Process p;
  p.args = {"sh", "-c", "echo \"$GREETING\" from $(pwd); echo oops >&2; exit 3"};
  p.env = {"PATH=/usr/bin:/bin", "GREETING=hello"};
  p.cwd = "/tmp";
  SpawnedProcess s = ProcessSpawner::spawn(p);
  ASSERT_FALSE(s.start_error) << *s.start_error;
  EXPECT_FALSE(s.stdin_pipe);
  EXPECT_EQ(read_all(s.stdout_pipe.get()), "hello from /tmp\n");
  EXPECT_EQ(read_all(s.stderr_pipe.get()), "oops\n");
  EXPECT_EQ(wait_exit_code(s.pid), 3);
}

// A tty process runs on a pseudo-terminal of the asked size, both streams merged on it;
// bytes typed into it reach the process through the line discipline.
TEST(ProcessSpawner, TtyProcessGetsATerminalOfItsSize) {
  Process p;
  p.args = {"/bin/sh", "-c", "tty; stty size; echo oops >&2; read line; echo got $line"};
  p.env = {"PATH=/usr/bin:/bin"};
  p.stdin = true;
  p.tty = WindowSize{33, 101};
  SpawnedProcess s = ProcessSpawner::spawn(p);
  ASSERT_FALSE(s.start_error) << *s.start_error;
  ASSERT_TRUE(s.terminal);
  EXPECT_FALSE(s.stderr_pipe);
  ASSERT_TRUE(s.stdin_pipe);
  ASSERT_EQ(::write(s.stdin_pipe.get(), "typed\n", 6), 6);
  const std::string out = read_all(s.stdout_pipe.get());
  EXPECT_NE(out.find("/dev/pts/"), std::string::npos) << out;
  EXPECT_NE(out.find("33 101\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("oops\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("got typed\r\n"), std::string::npos) << out;
  EXPECT_EQ(wait_exit_code(s.pid), 0);
}

TEST(ProcessSpawner, FeedsStdinWhenAsked) {
  Process p;
  p.args = {"/bin/cat"};
  p.stdin = true;
  SpawnedProcess s = ProcessSpawner::spawn(p);
  ASSERT_TRUE(s.stdin_pipe);
  ASSERT_EQ(::write(s.stdin_pipe.get(), "abc", 3), 3);
  s.stdin_pipe.reset();
  EXPECT_EQ(read_all(s.stdout_pipe.get()), "abc");
  EXPECT_EQ(wait_exit_code(s.pid), 0);
}

TEST(ProcessSpawner, StdinIsDevNullByDefault) {
  Process p;
  p.args = {"/bin/cat"};
  SpawnedProcess s = ProcessSpawner::spawn(p);
  EXPECT_EQ(read_all(s.stdout_pipe.get()), "");
  EXPECT_EQ(wait_exit_code(s.pid), 0);
}

TEST(ProcessSpawner, NotFoundInPathIs127) {
  Process p;
  p.args = {"no-such-program-fcvm"};
  p.env = {"PATH=/nonexistent:/bin"};
  SpawnedProcess s = ProcessSpawner::spawn(p);
  ASSERT_TRUE(s.start_error);
  EXPECT_EQ(*s.start_error,
            "cannot run 'no-such-program-fcvm': executable file not found in PATH (/nonexistent:/bin)");
  EXPECT_EQ(s.start_exit_code, 127);
  EXPECT_EQ(wait_exit_code(s.pid), 127);
}

TEST(ProcessSpawner, MissingAbsolutePathIs127) {
  Process p;
  p.args = {"/no/such/program"};
  SpawnedProcess s = ProcessSpawner::spawn(p);
  ASSERT_TRUE(s.start_error);
  EXPECT_EQ(*s.start_error, "cannot run '/no/such/program': No such file or directory");
  EXPECT_EQ(wait_exit_code(s.pid), 127);
}

TEST(ProcessSpawner, NotExecutableIs126) {
  TestDir t;
  const auto script = t.path() / "script";
  std::ofstream(script) << "#!/bin/sh\necho no\n";
  ::chmod(script.c_str(), 0644);
  Process p;
  p.args = {"script"};
  p.env = {"PATH=" + t.path().string()};
  SpawnedProcess s = ProcessSpawner::spawn(p);
  // Even root cannot exec a file without any x bit.
  ASSERT_TRUE(s.start_error);
  EXPECT_EQ(*s.start_error, "cannot run 'script': Permission denied");
  EXPECT_EQ(s.start_exit_code, 126);
  EXPECT_EQ(wait_exit_code(s.pid), 126);
}

TEST(ProcessSpawner, BadWorkingDirectoryIs126) {
  TestDir dir;
  const auto file = dir.path() / "file";
  std::ofstream(file) << "not a directory";
  Process p;
  p.args = {"/bin/true"};
  p.cwd = (file / "sub").string();  // cannot be created: its parent is a file
  SpawnedProcess s = ProcessSpawner::spawn(p);
  ASSERT_TRUE(s.start_error);
  EXPECT_EQ(*s.start_error,
            "cannot change to working directory '" + p.cwd + "': Not a directory");
  EXPECT_EQ(wait_exit_code(s.pid), 126);
}

// As podman: -w to a directory the image lacks creates it.
TEST(ProcessSpawner, MissingWorkingDirectoryIsCreated) {
  TestDir dir;
  Process p;
  p.args = {"sh", "-c", "pwd"};
  p.env = {"PATH=/usr/bin:/bin"};
  p.cwd = (dir.path() / "a" / "b" / "c").string();
  SpawnedProcess s = ProcessSpawner::spawn(p);
  ASSERT_FALSE(s.start_error) << *s.start_error;
  EXPECT_EQ(read_all(s.stdout_pipe.get()), p.cwd + "\n");
  EXPECT_EQ(wait_exit_code(s.pid), 0);
}

TEST(ProcessSpawner, SearchPathDefaults) {
  EXPECT_EQ(ProcessSpawner::search_path({"A=1", "PATH=/x:/y"}), "/x:/y");
  EXPECT_EQ(ProcessSpawner::search_path({"A=1"}), kDefaultPath);
  EXPECT_EQ(ProcessSpawner::exit_code_for_exec_errno(ENOENT), 127);
  EXPECT_EQ(ProcessSpawner::exit_code_for_exec_errno(EACCES), 126);
}

}  // namespace
}  // namespace fcvm::agent
