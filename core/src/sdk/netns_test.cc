#include "fcvm/netns.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "fcvm/child_process.h"
#include "net_test_support.h"

namespace fcvm {
namespace {

using testing::is_root;
using testing::unique_ifname;

ino_t netns_inode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

TEST(Netns, NamedNamespaceIsSeparateAndRemovedByDestructor) {
  if (!is_root()) GTEST_SKIP() << "needs root to create network namespaces";
  const std::string name = unique_ifname("fcvmt-ns");
  const auto path = Netns::named_path(name);
  {
    auto ns = Netns::create_named(name);
    ASSERT_TRUE(ns.ok()) << ns.status().message();
    EXPECT_TRUE(std::filesystem::exists(path));
    ino_t inside = 0;
    ASSERT_TRUE(ns->run_in([&] {
                    inside = netns_inode("/proc/thread-self/ns/net");
                    return ok_status();
                  }).ok());
    EXPECT_NE(inside, 0u);
    EXPECT_NE(inside, netns_inode("/proc/thread-self/ns/net"));
    // `ip netns` sees it, as other tools do.
    auto listed = run_command({"ip", "netns", "list"});
    ASSERT_TRUE(listed.ok());
    EXPECT_NE(listed->find(name), std::string::npos);
    auto again = Netns::create_named(name);
    EXPECT_EQ(again.status().code(), Errc::already_exists);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(Netns::remove_named(name).ok()) << "removal is idempotent";
}

TEST(Netns, ReleasedNamespaceOutlivesItsObjectAndOpensByName) {
  if (!is_root()) GTEST_SKIP() << "needs root to create network namespaces";
  const std::string name = unique_ifname("fcvmt-nr");
  {
    auto ns = Netns::create_named(name);
    ASSERT_TRUE(ns.ok()) << ns.status().message();
    ns->release();
  }
  auto opened = Netns::open_named(name);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  opened = Netns();  // not owned: does not remove
  EXPECT_TRUE(std::filesystem::exists(Netns::named_path(name)));
  EXPECT_TRUE(Netns::remove_named(name).ok());
  EXPECT_EQ(Netns::open_named(name).status().code(), Errc::not_found);
}

TEST(Netns, AnonymousNamespaceIsJoinableByAChild) {
  if (!is_root()) GTEST_SKIP() << "needs root to create network namespaces";
  auto ns = Netns::create_anonymous();
  ASSERT_TRUE(ns.ok()) << ns.status().message();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  SpawnOptions opts;
  opts.argv = {"cat", "/proc/net/dev"};
  opts.namespaces = {ns->join_path()};
  opts.stdout_fd = fds[1];
  auto child = ChildProcess::spawn(opts);
  ::close(fds[1]);
  ASSERT_TRUE(child.ok()) << child.status().message();
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  EXPECT_TRUE(child->wait()->success());
  EXPECT_NE(out.find("lo:"), std::string::npos);
  EXPECT_EQ(out.find("eth"), std::string::npos) << "a fresh namespace holds only lo:\n" << out;
}

TEST(Netns, SysctlInsideDoesNotTouchTheHost) {
  if (!is_root()) GTEST_SKIP() << "needs root to create network namespaces";
  auto ns = Netns::create_anonymous();
  ASSERT_TRUE(ns.ok()) << ns.status().message();
  const auto host_before = read_sysctl("net.ipv4.ip_forward");
  ASSERT_TRUE(host_before.ok());
  std::string inside;
  ASSERT_TRUE(ns->run_in([&] {
                  FCVM_RETURN_IF_ERROR(write_sysctl("net.ipv4.ip_forward", host_before.value() == "1" ? "0" : "1"));
                  auto v = read_sysctl("net.ipv4.ip_forward");
                  if (!v) return v.status();
                  inside = *v;
                  return ok_status();
                }).ok());
  EXPECT_NE(inside, *host_before);
  EXPECT_EQ(*read_sysctl("net.ipv4.ip_forward"), *host_before);
}

TEST(Netns, BadNamesAreRefused) {
  EXPECT_EQ(Netns::create_named("../x").status().code(), Errc::invalid_argument);
  EXPECT_EQ(Netns::remove_named("").code(), Errc::invalid_argument);
}

}  // namespace
}  // namespace fcvm
