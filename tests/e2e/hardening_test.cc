// What a hostile or unlucky user meets: private files, clear refusals, the pull policy, and
// commands run by another user. Most checks fail before a VM boots; one test boots a VM.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "fcvm/atomic_file.h"
#include "fcvm_cli.h"

namespace fcvm::test {
namespace {

namespace fs = std::filesystem;

// A throwaway unprivileged account, removed again when the object goes.
class TestUser {
 public:
  TestUser() : name_("fcvmt" + std::to_string(::getpid())) {
    auto made = run_command({"useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                             "--user-group", name_});
    if (!made) throw std::runtime_error("useradd " + name_ + ": " + made.status().message());
    const passwd* pw = ::getpwnam(name_.c_str());
    if (!pw) throw std::runtime_error("useradd made no user " + name_);
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
  }
  ~TestUser() { (void)run_command({"userdel", name_}); }
  TestUser(const TestUser&) = delete;
  TestUser& operator=(const TestUser&) = delete;

  RunOptions as() const { return RunOptions{{}, std::make_pair(uid_, gid_)}; }

  // Which of `paths` this user can open for reading (files, dirs) or connect to (sockets).
  std::vector<std::string> can_read(const std::vector<fs::path>& paths) const {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe");
    const pid_t child = ::fork();
    if (child == 0) {
      ::close(fds[0]);
      if (::setgroups(0, nullptr) != 0 || ::setgid(gid_) != 0 || ::setuid(uid_) != 0) ::_exit(2);
      for (const auto& p : paths) {
        struct stat st {};
        bool readable = false;
        if (::lstat(p.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
          const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
          sockaddr_un addr{};
          addr.sun_family = AF_UNIX;
          std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", p.c_str());
          readable = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
          ::close(s);
        } else {
          const int fd = ::open(p.c_str(), O_RDONLY | O_NONBLOCK);
          readable = fd >= 0;
          if (fd >= 0) ::close(fd);
        }
        if (readable) {
          const std::string line = p.string() + "\n";
          (void)!::write(fds[1], line.data(), line.size());
        }
      }
      ::_exit(0);
    }
    ::close(fds[1]);
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("setuid failed");
    std::vector<std::string> readable;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) readable.push_back(line);
    return readable;
  }

 private:
  std::string name_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

class HardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
    cli_ = std::make_unique<FcvmCli>();
  }

  std::vector<std::string> run_args(std::vector<std::string> args) const {
    args.insert(args.begin(), {"podman", "run", "--kernel", FcvmCli::kernel().string()});
    return args;
  }

  std::unique_ptr<FcvmCli> cli_;
};

// Everything fcvm writes is its user's alone: guest RAM (which holds the container's
// environment), console and VMM logs, state, images and disks. Tested in a data dir that is
// itself world-readable, as /var/lib/fcvm usually is, by a user created for the test; the
// same user cannot stop the VM or read its logs, and is told why.
TEST_F(HardeningTest, FilesArePrivateAndOtherUsersAreRefused) {
  TestUser user;
  fs::permissions(cli_->data_dir(), fs::perms::owner_all | fs::perms::group_read |
                                        fs::perms::group_exec | fs::perms::others_read |
                                        fs::perms::others_exec);
  const std::string secret = "SECRET=hunter2-" + std::to_string(::getpid());
  auto r = cli_->run(run_args({"-d", "--name", "private", "-e", secret, FcvmCli::hello_image(),
                               "sh", "-c", "echo ready; sleep 600"}));
  ASSERT_EQ(r.code, 0) << r.err;
  auto rec = cli_->record("private");
  ASSERT_FALSE(rec.is_null());
  const fs::path vm_dir = rec["vm_dir"].get<std::string>();
  ASSERT_TRUE(fs::exists(vm_dir / "mem"));
  ASSERT_TRUE(fs::exists(vm_dir / "console.log"));
  // No process shows the container's environment in its command line (`ps` for all).
  const std::string value = secret.substr(secret.find('=') + 1);
  for (const auto& proc : fs::directory_iterator("/proc")) {
    const std::string pid = proc.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(proc.path() / "cmdline");
    const std::string cmdline((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(cmdline.find(value), std::string::npos) << "pid " << pid << " shows the secret: " << cmdline;
  }
  std::ifstream title("/proc/" + std::to_string(rec["pid"].get<int>()) + "/cmdline");
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(title)), {}).rfind("fcvm: VM private", 0), 0u);

  // Modes: no group or other bits on anything fcvm made (image contents keep the image's),
  // but for the guest assets, which are public so that any user may boot them.
  std::vector<fs::path> all;
  std::vector<fs::path> assets;
  std::vector<std::string> too_open;
  for (auto it = fs::recursive_directory_iterator(cli_->data_dir()); it != fs::end(it); ++it) {
    const fs::path& p = it->path();
    if (p.filename().string().rfind(".cli-", 0) == 0) continue;  // this fixture's capture files
    if (it.depth() == 0 && (p.filename() == "initramfs" || p.filename() == "kernels")) {
      for (const auto& e : fs::recursive_directory_iterator(p)) {
        if (e.path().filename() == "initrd.gz") assets.push_back(e.path());
      }
      it.disable_recursion_pending();
      continue;
    }
    all.push_back(p);
    if (p.filename() == "rootfs" && it->is_directory()) {
      it.disable_recursion_pending();  // the image's own tree, modes included, under a 0700 dir
      continue;
    }
    struct stat st {};
    ASSERT_EQ(::lstat(p.c_str(), &st), 0) << p;
    if (!S_ISLNK(st.st_mode) && (st.st_mode & 077) != 0) {
      std::ostringstream m;
      m << p.string() << " " << std::oct << (st.st_mode & 07777);
      too_open.push_back(m.str());
    }
  }
  EXPECT_TRUE(too_open.empty()) << ::testing::PrintToString(too_open);
  // Image contents too, read through their private parents.
  std::vector<fs::path> image_files;
  for (const auto& p : all) {
    if (p.filename() == "rootfs") image_files.push_back(p / "hello.sh");
  }
  ASSERT_FALSE(image_files.empty());
  all.insert(all.end(), image_files.begin(), image_files.end());
  EXPECT_EQ(user.can_read(all), std::vector<std::string>{});
  ASSERT_FALSE(assets.empty());
  std::vector<std::string> asset_names;
  for (const auto& p : assets) asset_names.push_back(p.string());
  EXPECT_EQ(user.can_read(assets), asset_names);

  // Another user may neither stop the VM nor read its logs, and is told so.
  auto stop = cli_->run({"stop", "private"}, user.as());
  EXPECT_NE(stop.code, 0) << stop.out;
  EXPECT_NE(stop.err.find("Permission denied"), std::string::npos) << stop.err;
  EXPECT_NE(stop.err.find("run fcvm as that user (or root), or pass --data-dir"), std::string::npos)
      << stop.err;
  auto logs = cli_->run({"logs", "private"}, user.as());
  EXPECT_NE(logs.code, 0);
  EXPECT_NE(logs.err.find("Permission denied"), std::string::npos) << logs.err;
  EXPECT_TRUE(cli_->record("private")["alive"].get<bool>()) << "another user stopped the VM";

  EXPECT_EQ(cli_->run({"stop", "-t", "0", "private"}).code, 0);
  EXPECT_EQ(cli_->run({"gc"}).code, 0);
}

// Usage problems found before a VM exists: each is one line naming the value and the fix.
TEST_F(HardeningTest, BadValuesAreNamedWithTheirFix) {
  auto uid = cli_->run(run_args({"--rm", "-u", "99999999999", FcvmCli::hello_image()}));
  EXPECT_EQ(uid.code, 125);
  EXPECT_EQ(uid.err, "fcvm: --user '99999999999': UID 99999999999 is out of range; use a number "
                     "from 0 to 4294967294\n");
  auto gid = cli_->run(run_args({"--rm", "-u", "0:4294967295", FcvmCli::hello_image()}));
  EXPECT_EQ(gid.code, 125);
  EXPECT_NE(gid.err.find("GID 4294967295 is out of range"), std::string::npos) << gid.err;

  // A name that is another VM's id would make `stop <id>` ambiguous.
  // (This run also shows that text from the guest reaches the terminal inert: the agent's
  // error quotes the program name, escape sequence included.)
  auto first = cli_->run(run_args({"--name", "first", FcvmCli::hello_image(), "\x1b[2Jgone"}));
  EXPECT_EQ(first.code, 127) << first.err;
  EXPECT_EQ(first.err.find('\x1b'), std::string::npos) << first.err;
  EXPECT_NE(first.err.find("\\x1b[2Jgone"), std::string::npos) << first.err;
  const std::string id = cli_->record("first")["id"];
  auto clash = cli_->run(run_args({"--rm", "--name", id, FcvmCli::hello_image(), "true"}));
  EXPECT_EQ(clash.code, 125);
  EXPECT_NE(clash.err.find("is the id of vm 'first'"), std::string::npos) << clash.err;
  EXPECT_EQ(cli_->ls().size(), 1u);

  // A source image whose index.json was cut short.
  const fs::path layout = cli_->data_dir() / "cut-layout";
  const std::string hello = FcvmCli::hello_image();
  const fs::path source = hello.substr(4, hello.rfind(':') - 4);
  fs::copy(source, layout, fs::copy_options::recursive);
  const std::string index = read_file(layout / "index.json").value();
  std::ofstream(layout / "index.json", std::ios::trunc) << index.substr(0, index.size() / 2);
  auto cut = cli_->run(run_args({"--rm", "oci:" + layout.string() + ":hello"}));
  EXPECT_EQ(cut.code, 125);
  EXPECT_NE(cut.err.find("oci:" + layout.string() + ":hello"), std::string::npos) << cut.err;
  EXPECT_NE(cut.err.find("is truncated"), std::string::npos) << cut.err;
  EXPECT_EQ(std::count(cut.err.begin(), cut.err.end(), '\n'), 1) << cut.err;
}

// --pull as podman: missing (the default) uses a stored image without running skopeo.
// Each run stops at a bad --user, right after the image is resolved, so no VM boots.
TEST_F(HardeningTest, PullPolicyDecidesWhenSkopeoRuns) {
  const fs::path bin = cli_->data_dir() / "fake-bin";
  const fs::path calls = cli_->data_dir() / "skopeo-calls";
  fs::create_directories(bin);
  ASSERT_TRUE(write_file_atomic(bin / "skopeo",
                                "#!/bin/sh\necho \"$1\" >> " + calls.string() +
                                    "\nexec /usr/bin/skopeo \"$@\"\n",
                                0755)
                  .ok());
  RunOptions counted{{"PATH=" + bin.string() + ":" + std::getenv("PATH")}, std::nullopt};
  auto skopeo_calls = [&] {
    auto text = read_file(calls);
    return text.ok() ? *text : std::string();
  };
  auto run = [&](const std::string& policy) {
    std::vector<std::string> args = {"--rm", "-u", "99999999999"};
    if (!policy.empty()) args.push_back("--pull=" + policy);
    args.push_back(FcvmCli::hello_image());
    return cli_->run(run_args(args), counted);
  };

  auto never = run("never");
  EXPECT_EQ(never.code, 125);
  EXPECT_NE(never.err.find("is not stored and --pull=never forbids fetching it; run 'fcvm image "
                           "pull"),
            std::string::npos)
      << never.err;
  EXPECT_EQ(skopeo_calls(), "");

  auto first = run("");
  EXPECT_NE(first.err.find("out of range"), std::string::npos) << first.err;
  EXPECT_EQ(skopeo_calls(), "copy\n");
  auto cached = run("");
  EXPECT_NE(cached.err.find("out of range"), std::string::npos) << cached.err;
  EXPECT_EQ(skopeo_calls(), "copy\n") << "a stored image must be used without skopeo";
  EXPECT_NE(run("never").err.find("out of range"), std::string::npos);
  EXPECT_EQ(skopeo_calls(), "copy\n");
  run("newer");
  EXPECT_EQ(skopeo_calls(), "copy\ninspect\n") << "an unchanged digest needs no copy";
  run("always");
  EXPECT_EQ(skopeo_calls(), "copy\ninspect\ncopy\n");

  auto bad = run("sometimes");
  EXPECT_EQ(bad.code, 125);
  EXPECT_EQ(bad.err, "fcvm: --pull 'sometimes': use always, missing, never or newer\n");
}

// A VM whose VMM dies keeps its record (status failed, the reason) and its logs until
// `fcvm rm`; `ls` lists only running VMs, `ls -a` all.
TEST_F(HardeningTest, FailedRunKeepsRecordAndLogsUntilRm) {
  auto r = cli_->run(run_args({"-d", "--name", "crash", FcvmCli::hello_image(), "sh", "-c",
                               "echo before; sleep 600"}));
  ASSERT_EQ(r.code, 0) << r.err;
  const fs::path vm_dir = cli_->record("crash")["vm_dir"].get<std::string>();
  while (cli_->run({"logs", "crash"}).out != "before\n") {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const pid_t vmm = live_vmm(cli_->record("crash"));
  ASSERT_NE(vmm, 0);
  ::kill(vmm, SIGKILL);
  ASSERT_TRUE(cli_->wait_status("crash", "failed", std::chrono::seconds(60)));

  auto rec = cli_->record("crash");
  EXPECT_FALSE(rec["alive"].get<bool>());
  EXPECT_NE(rec["error"].get<std::string>().find("the VM stopped before the container exited"),
            std::string::npos)
      << rec.dump();
  auto running = cli_->run({"ls"});
  EXPECT_EQ(running.out.find("crash"), std::string::npos) << running.out;
  auto all = cli_->run({"ls", "-a"});
  EXPECT_NE(all.out.find("failed: the VM stopped"), std::string::npos) << all.out;
  EXPECT_EQ(cli_->run({"logs", "crash"}).out, "before\n");
  EXPECT_NE(cli_->run({"logs", "--console", "crash"}).out, "");

  auto rm = cli_->run({"rm", "crash"});
  EXPECT_EQ(rm.code, 0) << rm.err;
  EXPECT_EQ(rm.out, "crash\n");
  EXPECT_TRUE(cli_->record("crash").is_null());
  EXPECT_FALSE(fs::exists(vm_dir));
  EXPECT_EQ(cli_->run({"rm", "crash"}).code, 1);
}

}  // namespace
}  // namespace fcvm::test
