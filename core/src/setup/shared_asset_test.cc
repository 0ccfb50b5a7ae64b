#include "setup/shared_asset.h"

#include <dirent.h>
#include <grp.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

void write(const fs::path& p, mode_t mode) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << "x";
  ::chmod(p.c_str(), mode);
}

// What `nobody` can do with each path: 'r' it opens for reading, 'l' it lists, '-' neither.
std::string as_nobody(const std::vector<fs::path>& paths) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    std::string out;
    for (const auto& p : paths) {
      if (DIR* d = ::opendir(p.c_str())) {
        ::closedir(d);
        out += 'l';
      } else if (const int fd = ::open(p.c_str(), O_RDONLY); fd >= 0) {
        ::close(fd);
        out += 'r';
      } else {
        out += '-';
      }
    }
    (void)!::write(fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  char buf[64];
  const ssize_t n = ::read(fds[0], buf, sizeof buf);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "child failed";
}

TEST(ShareAsset, AnyUserReadsTheAssetAndNothingElse) {
  if (::geteuid() != 0) GTEST_SKIP() << "SKIPPED: needs root to check access as another user";
  auto tmp = TempDir::create("fcvm-share-asset-");
  ASSERT_TRUE(tmp.ok());
  ::chmod(tmp->path().c_str(), 0755);
  const fs::path data = tmp->path() / "data";
  fs::create_directories(data);
  ::chmod(data.c_str(), 0700);
  const fs::path entry = data / "kernels" / "k1";
  write(entry / "vmlinux", 0600);
  write(entry / "bin" / "tool", 0700);
  write(data / "vms" / "x" / "mem", 0600);
  for (const fs::path& d : {data / "kernels", entry, entry / "bin", data / "vms", data / "vms" / "x"}) {
    ::chmod(d.c_str(), 0700);
  }
  ASSERT_EQ(as_nobody({data, entry / "vmlinux", data / "vms" / "x" / "mem"}), "---");

  ASSERT_TRUE(share_asset(data, entry).ok());
  EXPECT_EQ(mode_of(data), 0711u);
  EXPECT_EQ(mode_of(data / "kernels"), 0755u);
  EXPECT_EQ(mode_of(entry), 0755u);
  EXPECT_EQ(mode_of(entry / "vmlinux"), 0644u);
  EXPECT_EQ(mode_of(entry / "bin" / "tool"), 0755u);  // executables stay executable
  EXPECT_EQ(mode_of(data / "vms"), 0700u);
  // The asset is readable; the data dir cannot be listed; a VM's files stay private.
  EXPECT_EQ(as_nobody({entry / "vmlinux", data, data / "vms", data / "vms" / "x" / "mem"}), "r---");
  EXPECT_TRUE(share_asset(data, entry).ok());  // idempotent
}

TEST(ShareAsset, RefusesAPathOutsideTheDataDir) {
  auto tmp = TempDir::create("fcvm-share-asset-");
  ASSERT_TRUE(tmp.ok());
  fs::create_directories(tmp->path() / "data");
  const Status st = share_asset(tmp->path() / "data", tmp->path() / "data" / ".." / "elsewhere");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not below the data dir"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace fcvm
