// `fcvm podman run` checked against Debian's real podman: the same cases run under both on
// the same OCI layout, and their stdout, stderr (where it is the container's own) and exit
// codes are compared. podman is the oracle: where fcvm differs, either fcvm is fixed or the
// difference is listed in kKnownDifferences below with its reason.
//
// podman runs as root with its own temp storage and configuration (no system service, no
// system storage): runc, because crun refuses this host's hybrid cgroups; cgroupfs and vfs;
// no network; rlimits within this host's hard limits. Each test is one topic and runs its
// cases in turn, podman's concurrently with fcvm's. SKIPPED without podman, runc or root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm/temp_dir.h"
#include "fcvm/unique_fd.h"
#include "fcvm_cli.h"

namespace fcvm::test {
namespace {

// How a case compares stderr: exactly (the container's own writes), or only whether both
// wrote something (the error lines of podman and fcvm are each their own), or not at all.
enum class Stderr { kExact, kBothOrNeither, kIgnore };

struct Case {
  std::string name;
  std::vector<std::string> flags;    // between `run` and the image
  std::vector<std::string> command;  // after the image
  std::optional<std::string> input;  // stdin of both; nullopt: /dev/null
  Stderr stderr_check = Stderr::kExact;
};

// What differs between podman and fcvm in a case, on purpose or as a known issue.
enum Aspect : unsigned { kStdout = 1, kStderr = 2, kExitCode = 4 };

struct KnownDifference {
  unsigned aspects;
  const char* why;
};

// Every entry is checked: the aspects it names must still differ (a fixed fcvm makes the
// entry stale, which fails the case), and every other aspect must match.
const std::map<std::string, KnownDifference> kKnownDifferences = {
    {"pid_of_process",
     {kStdout,
      "podman starts the process as PID 1 of its own PID namespace; fcvm's guest agent is PID 1 "
      "of the guest and the process is its child in the guest's only PID namespace (with --init "
      "both run an init as PID 1 with the process as its child)"}},
    {"parent_pid",
     {kStdout, "as pid_of_process: podman's PID 1 has parent 0, fcvm's process has the agent (1)"}},
    {"process_table",
     {kStdout, "as pid_of_process: ps in fcvm's guest sees the agent as PID 1"}},
    {"main_process_kills_itself",
     {kStdout | kExitCode,
      "as pid_of_process: the kernel drops a signal sent to a PID namespace's init by one of its "
      "own processes when it has no handler, so podman's PID 1 survives kill -9 $$; fcvm's "
      "process is an ordinary process and dies (137)"}},
    {"main_process_terminates_itself",
     {kStdout | kExitCode, "as main_process_kills_itself, with SIGTERM (fcvm: 143)"}},
    {"container_variable",
     {kStdout,
      "podman sets container=podman for tools that detect containers; fcvm's process runs in a "
      "virtual machine, which such tools (systemd-detect-virt) detect by themselves"}},
    {"default_hostname",
     {kStdout,
      "podman names the host after the container's ID (12 hex digits); fcvm names it after the "
      "VM (--name, else fcvm-XXXXXX), which is also what `fcvm exec` and logs show"}},
    {"missing_workdir",
     {kStdout | kStderr | kExitCode,
      "podman refuses a -w directory the image does not have (126); fcvm's agent creates it "
      "(root-owned, 0755), as podman does only for the image's own WorkingDir"}},
    {"unknown_user",
     {kExitCode,
      "podman exits 126 for a user the image does not know (found when the container starts); "
      "fcvm resolves -u before it creates the VM, and such failures of the run itself exit 125"}},
    {"unknown_group",
     {kExitCode, "as unknown_user, for a group the image's /etc/group does not have"}},
    {"kernel_version",
     {kStdout,
      "the image's command prints uname -r: podman's container shares the host's kernel, fcvm's "
      "process runs on the guest kernel"}},
    {"user_unknown_uid",
     {kStdout,
      "podman adds an /etc/passwd and /etc/group entry for a -u UID:GID the image lacks (id then "
      "shows uid=4321(4321)); fcvm leaves the image's files as they are (id: uid=4321)"}},
    {"hostname_file_newline",
     {kStdout,
      "podman writes /etc/hostname without a final newline; fcvm's agent ends it with one, as "
      "Debian's own /etc/hostname is written"}},
    {"hostname_underscore",
     {kStdout | kStderr | kExitCode,
      "podman passes any name the kernel takes (spaces and '_' too) to sethostname; fcvm takes "
      "1-64 characters of [A-Za-z0-9.-], which /etc/hosts holds safely, and refuses others (125)"}},
    {"hostname_too_long",
     {kExitCode,
      "both refuse a name longer than the kernel's 64: podman when the container starts (126), "
      "fcvm before it creates anything (125)"}},
    {"stop_untrapped_pid1",
     {kExitCode,
      "as pid_of_process: podman's PID 1 (sleep) ignores the SIGTERM of podman stop and is killed "
      "after --time (137); fcvm's process dies of the SIGTERM (143). With --init both give 143"}},
    {"init_missing_program",
     {kExitCode,
      "podman's catatonit exits 1 when it cannot exec the process; fcvm keeps 127 (126 for a "
      "program that cannot run), with --init as without"}},
    {"detached_prints_id",
     {kStdout,
      "podman -d prints the container's 64-hex ID; fcvm -d prints the VM's name, which every "
      "fcvm command takes"}},
};

// A finished command: exit code and its streams.
struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
};

std::optional<std::filesystem::path> find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string rest = path ? path : "/usr/sbin:/usr/bin:/sbin:/bin";
  for (std::size_t start = 0; start <= rest.size();) {
    const auto colon = rest.find(':', start);
    const std::filesystem::path candidate =
        std::filesystem::path(rest.substr(start, colon - start)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return std::nullopt;
}

// A command started with its output going to files under `dir`, collected by finish().
class Running {
 public:
  Running(const std::filesystem::path& dir, const std::string& stem, const std::vector<std::string>& argv,
          const std::vector<std::string>& env_add, const std::optional<std::string>& input)
      : out_(dir / (stem + ".out")), err_(dir / (stem + ".err")) {
    UniqueFd in;
    if (input) {
      const auto in_path = dir / (stem + ".in");
      if (Status st = write_file_atomic(in_path, *input); !st.ok()) throw std::runtime_error(st.message());
      in.reset(::open(in_path.c_str(), O_RDONLY | O_CLOEXEC));
    }
    UniqueFd out(::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    UniqueFd err(::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    SpawnOptions opts;
    opts.argv = argv;
    opts.env_add = env_add;
    opts.stdin_fd = in ? in.get() : -1;
    opts.stdout_fd = out.get();
    opts.stderr_fd = err.get();
    auto child = ChildProcess::spawn(opts);
    if (!child) throw std::runtime_error(child.status().message());
    child_ = std::move(*child);
  }

  Outcome finish() {
    Outcome o;
    auto st = child_.wait();
    o.code = st ? (st->signal ? 128 + st->signal : st->code) : -1;
    auto out = read_file(out_);
    auto err = read_file(err_);
    o.out = out ? *out : "";
    o.err = err ? *err : "";
    return o;
  }

 private:
  std::filesystem::path out_, err_;
  ChildProcess child_;
};

// Debian's podman with everything of its own in a temp dir.
class Podman {
 public:
  static std::string missing_prerequisite() {
    if (::geteuid() != 0) return "podman as the oracle runs as root here";
    if (!find_program("podman")) return "podman is not installed (scripts/deps installs it)";
    if (!find_program("runc") && !std::filesystem::exists("/usr/sbin/runc")) {
      return "runc is not installed (scripts/deps installs it); crun cannot run on this host's cgroups";
    }
    return {};
  }

  Podman() : had_runc_state_(std::filesystem::exists("/run/runc")) {
    auto made = TempDir::create("fcvm-podman-diff-");
    if (!made) throw std::runtime_error(made.status().message());
    dir_ = std::move(*made);
    std::filesystem::create_directories(dir_.path() / "tmp");
    // The engine's own state (locks, exit files, events) would go to /run/libpod otherwise.
    const std::string conf =
        "[engine]\n"
        "events_logger = \"file\"\n"
        "events_logfile_path = \"" + (dir_.path() / "events.log").string() + "\"\n"
        "tmp_dir = \"" + (dir_.path() / "tmp").string() + "\"\n"
        "static_dir = \"" + (dir_.path() / "root/libpod").string() + "\"\n"
        "volume_path = \"" + (dir_.path() / "root/volumes").string() + "\"\n";
    if (Status st = write_file_atomic(dir_.path() / "containers.conf", conf); !st.ok()) {
      throw std::runtime_error(st.message());
    }
  }

  ~Podman() {
    Outcome left = run_now({"rm", "--all", "--force"});
    if (left.code != 0) ADD_FAILURE() << "podman rm --all: " << left.err;
    std::ifstream mounts("/proc/self/mounts");
    const std::string under = dir_.path().string() + "/";
    for (std::string dev, point, rest; mounts >> dev >> point && std::getline(mounts, rest);) {
      if (point.rfind(under, 0) == 0) ADD_FAILURE() << "podman left a mount: " << point;
    }
    // runc creates its default state dir even when told to keep state elsewhere.
    if (!had_runc_state_) {
      std::error_code ec;
      std::filesystem::remove("/run/runc", ec);  // only when empty
    }
  }

  std::vector<std::string> env() const {
    return {"CONTAINERS_CONF=" + (dir_.path() / "containers.conf").string(),
            "TMPDIR=" + (dir_.path() / "tmp").string(), "FCVM_DIFF_PASSED=from the host"};
  }

  std::vector<std::string> argv(const std::vector<std::string>& args) const {
    const auto& d = dir_.path();
    std::vector<std::string> v = {"podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                                  "--storage-driver", "vfs", "--root", (d / "root").string(),
                                  "--runroot", (d / "runroot").string(), "--tmpdir", (d / "tmp").string(),
                                  "--runtime-flag", "root=" + (d / "runc").string()};
    v.insert(v.end(), args.begin(), args.end());
    return v;
  }

  Outcome run_now(const std::vector<std::string>& args) const {
    Running r(dir_.path(), "cmd", argv(args), env(), std::nullopt);
    return r.finish();
  }

  // Pulls an `oci:DIR:TAG` reference; returns the image ID to run.
  std::string pull(const std::string& ref) const {
    Outcome o = run_now({"pull", "--quiet", ref});
    if (o.code != 0) throw std::runtime_error("podman pull " + ref + ": " + o.err);
    return o.out.substr(0, o.out.find('\n'));
  }

  // `podman run` with the flags every case needs here.
  std::vector<std::string> run_argv(const Case& c, const std::string& image) const {
    // podman's default rlimits exceed this host's hard limits, and runc cannot raise them:
    // stay well within them.
    rlimit files{}, procs{};
    ::getrlimit(RLIMIT_NOFILE, &files);
    ::getrlimit(RLIMIT_NPROC, &procs);
    const auto nofile = std::to_string(std::min<rlim_t>(files.rlim_max, 4096));
    const auto nproc = std::to_string(std::min<rlim_t>(procs.rlim_max, 4096));
    std::vector<std::string> args = {"run", "--network", "none", "--ulimit", "nofile=" + nofile + ":" + nofile,
                                     "--ulimit", "nproc=" + nproc + ":" + nproc};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    args.push_back(image);
    args.insert(args.end(), c.command.begin(), c.command.end());
    return argv(args);
  }

  const std::filesystem::path& dir() const { return dir_.path(); }

 private:
  bool had_runc_state_;
  TempDir dir_;
};

std::string describe(const Outcome& o) {
  return "exit " + std::to_string(o.code) + "\n  stdout: " + ::testing::PrintToString(o.out) +
         "\n  stderr: " + ::testing::PrintToString(o.err);
}

class PodmanDiffTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!FcvmCli::missing_prerequisite().empty() || !Podman::missing_prerequisite().empty()) return;
    podman_ = new Podman();
    cli_ = new FcvmCli();
    image_ref_ = FcvmCli::hello_image();
    podman_image_ = podman_->pull(image_ref_);
  }

  static void TearDownTestSuite() {
    delete cli_;
    cli_ = nullptr;
    delete podman_;
    podman_ = nullptr;
  }

  void SetUp() override {
    if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
    if (auto why = Podman::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
  }

  std::vector<std::string> fcvm_argv(const Case& c) const {
    std::vector<std::string> v = cli_->base_args();
    v.insert(v.end(), {"podman", "run", "--kernel", FcvmCli::kernel().string()});
    v.insert(v.end(), c.flags.begin(), c.flags.end());
    v.push_back(image_ref_);
    v.insert(v.end(), c.command.begin(), c.command.end());
    return v;
  }

  // Runs `c` under both (podman in the background while fcvm runs) and compares.
  void check(const Case& c) {
    SCOPED_TRACE("case " + c.name);
    Running theirs(podman_->dir(), c.name + ".podman", podman_->run_argv(c, podman_image_), podman_->env(), c.input);
    Running ours(cli_->data_dir(), c.name + ".fcvm", fcvm_argv(c), {"FCVM_DIFF_PASSED=from the host"}, c.input);
    const Outcome mine = ours.finish();
    const Outcome oracle = theirs.finish();
    compare(c, oracle, mine);
  }

  static void compare(const Case& c, const Outcome& oracle, const Outcome& mine) {
    unsigned differs = 0;
    if (oracle.out != mine.out) differs |= kStdout;
    if (oracle.code != mine.code) differs |= kExitCode;
    switch (c.stderr_check) {
      case Stderr::kExact:
        if (oracle.err != mine.err) differs |= kStderr;
        break;
      case Stderr::kBothOrNeither:
        if (oracle.err.empty() != mine.err.empty()) differs |= kStderr;
        break;
      case Stderr::kIgnore:
        break;
    }
    const std::string both = "\npodman: " + describe(oracle) + "\nfcvm:   " + describe(mine);
    auto known = kKnownDifferences.find(c.name);
    const unsigned expected = known == kKnownDifferences.end() ? 0 : known->second.aspects;
    if (known != kKnownDifferences.end()) {
      std::cout << "[ KNOWN    ] " << c.name << ": " << known->second.why << "\n";
    }
    EXPECT_EQ(differs & ~expected, 0u) << "fcvm differs from podman" << both;
    EXPECT_EQ(expected & ~differs, 0u)
        << "listed in kKnownDifferences, but fcvm now matches podman there: update the table" << both;
  }

  void check_all(const std::vector<Case>& cases) {
    std::set<std::string> names;
    for (const auto& c : cases) {
      ASSERT_TRUE(names.insert(c.name).second) << "two cases named " << c.name;
      check(c);
    }
  }

  // Runs `c` detached under both (its flags name the container `c.name`, its command prints
  // "ready" once it may be stopped), stops it with `stop_flags`, and compares the exit codes
  // and what the container printed.
  void check_stop(const Case& c, const std::vector<std::string>& stop_flags) {
    SCOPED_TRACE("case " + c.name);
    Case detached = c;
    detached.flags.insert(detached.flags.begin(), {"-d", "--name", c.name});
    Running theirs(podman_->dir(), c.name + ".podman", podman_->run_argv(detached, podman_image_), podman_->env(),
                   std::nullopt);
    Running ours(cli_->data_dir(), c.name + ".fcvm", fcvm_argv(detached), {}, std::nullopt);
    const Outcome started_mine = ours.finish();
    const Outcome started_theirs = theirs.finish();
    ASSERT_EQ(started_theirs.code, 0) << describe(started_theirs);
    ASSERT_EQ(started_mine.code, 0) << describe(started_mine);
    // Stop only once the container's signal handlers are in place.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    auto ready = [&](const std::string& logs) { return logs.find("ready\n") != std::string::npos; };
    while (!ready(podman_->run_now({"logs", c.name}).out) || !ready(cli_->run({"logs", c.name}).out)) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the container never printed 'ready'";
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::vector<std::string> podman_stop = {"stop"}, fcvm_stop = {"stop"};
    for (auto* v : {&podman_stop, &fcvm_stop}) {
      v->insert(v->end(), stop_flags.begin(), stop_flags.end());
      v->push_back(c.name);
    }
    Outcome podman_stopped = podman_->run_now(podman_stop);
    EXPECT_EQ(podman_stopped.code, 0) << describe(podman_stopped);
    CliResult fcvm_stopped = cli_->run(fcvm_stop);
    EXPECT_EQ(fcvm_stopped.code, 0) << fcvm_stopped.err;
    Outcome oracle = podman_->run_now({"wait", c.name});
    oracle.code = oracle.out.empty() ? -1 : std::stoi(oracle.out);
    const Outcome podman_logs = podman_->run_now({"logs", c.name});
    oracle.out = podman_logs.out;
    oracle.err = podman_logs.err;
    ASSERT_TRUE(cli_->wait_status(c.name, "exited", std::chrono::seconds(120)));
    Outcome mine;
    mine.code = cli_->record(c.name).value("exit_code", -1);
    const CliResult fcvm_logs = cli_->run({"logs", c.name});
    mine.out = fcvm_logs.out;
    mine.err = fcvm_logs.err;
    compare(c, oracle, mine);
    EXPECT_EQ(podman_->run_now({"rm", c.name}).code, 0);
    EXPECT_EQ(cli_->run({"rm", c.name}).code, 0);
  }

  static inline Podman* podman_ = nullptr;
  static inline FcvmCli* cli_ = nullptr;
  static inline std::string image_ref_;
  static inline std::string podman_image_;
};

const std::vector<std::string> sh(const std::string& script) { return {"sh", "-c", script}; }

TEST_F(PodmanDiffTest, ExitCodes) {
  check_all({
      {"exit_zero", {"--rm"}, sh("echo out; echo err >&2")},
      {"exit_one", {"--rm"}, sh("exit 1")},
      {"exit_n", {"--rm"}, sh("echo bye; exit 42")},
      {"exit_wraps", {"--rm"}, sh("exit 256")},
      {"kernel_version", {"--rm"}, {}},
      {"not_executable", {"--rm"}, {"/etc/passwd"}, {}, Stderr::kBothOrNeither},
      {"directory_as_program", {"--rm"}, {"/tmp"}, {}, Stderr::kBothOrNeither},
      {"missing_path", {"--rm"}, {"/no/such/program"}, {}, Stderr::kBothOrNeither},
      {"missing_in_path", {"--rm"}, {"no-such-program"}, {}, Stderr::kBothOrNeither},
      {"child_killed", {"--rm"}, sh("sh -c 'kill -9 $$'; echo $?")},
      {"child_terminated", {"--rm"}, sh("sh -c 'kill -TERM $$'; echo $?")},
      {"main_process_kills_itself", {"--rm"}, sh("kill -9 $$; echo survived")},
      {"main_process_terminates_itself", {"--rm"}, sh("kill -TERM $$; echo survived")},
      {"trapped_signal", {"--rm"}, sh("trap 'echo got TERM; exit 3' TERM; kill -TERM $$; sleep 5")},
  });
}

TEST_F(PodmanDiffTest, ProcessAndEnvironment) {
  check_all({
      {"pid_of_process", {"--rm"}, sh("echo $$")},
      {"parent_pid", {"--rm"}, sh("echo $PPID")},
      {"process_table", {"--rm"}, sh("ps -o pid,comm")},
      {"default_environment", {"--rm"}, sh("echo \"$HOME|$PATH|$GREETING|${TERM-unset}|$PWD|$SHLVL\"")},
      {"container_variable", {"--rm"}, sh("echo ${container-unset}")},
      {"hostname_variable_matches_hostname", {"--rm"}, sh("[ \"$HOSTNAME\" = \"$(hostname)\" ]; echo $?")},
      {"default_hostname", {"--rm"}, sh("hostname")},
      {"etc_hostname_matches_hostname", {"--rm"}, sh("[ \"$(cat /etc/hostname)\" = \"$(hostname)\" ]; echo $?")},
      {"env_set", {"--rm", "-e", "FOO=bar baz", "-e", "GREETING=hi"}, sh("echo \"$FOO|$GREETING\"")},
      {"env_from_host", {"--rm", "-e", "FCVM_DIFF_PASSED"}, sh("echo \"$FCVM_DIFF_PASSED\"")},
      {"env_unset_on_host", {"--rm", "-e", "FCVM_DIFF_NOT_SET"}, sh("echo \"${FCVM_DIFF_NOT_SET-unset}\"")},
      {"env_path_override", {"--rm", "-e", "PATH=/bin"}, sh("echo $PATH; command -v ls")},
      {"env_home_override", {"--rm", "-e", "HOME=/tmp"}, sh("echo $HOME")},
      {"image_env_survives", {"--rm", "-e", "OTHER=1"}, sh("echo $GREETING $OTHER")},
      {"workdir_flag", {"--rm", "-w", "/tmp"}, sh("pwd; echo $PWD")},
      {"workdir_default", {"--rm"}, {"pwd"}},
      {"missing_workdir", {"--rm", "-w", "/no/such/dir"}, {"pwd"}, {}, Stderr::kBothOrNeither},
      {"entrypoint_word", {"--rm", "--entrypoint", "/bin/echo"}, {"a", "b"}},
      {"entrypoint_json", {"--rm", "--entrypoint", "[\"/bin/echo\",\"from-json\"]"}, {"x"}},
      {"entrypoint_drops_image_cmd", {"--rm", "--entrypoint", "/bin/echo"}, {}},
      {"entrypoint_empty", {"--rm", "--entrypoint", ""}, {"echo", "plain"}},
      {"entrypoint_sh_args", {"--rm", "--entrypoint", "/bin/sh"}, {"-c", "echo \"$0|$1\"", "first", "second"}},
  });
}

TEST_F(PodmanDiffTest, EnvFile) {
  const auto file = cli_->data_dir() / "diff.env";
  std::ofstream(file) << "# a comment\n\nGREETING=from file\nSPACED=a b  c\nFCVM_DIFF_PASSED\n";
  check_all({
      {"env_file", {"--rm", "--env-file", file.string()}, sh("echo \"$GREETING|$SPACED|$FCVM_DIFF_PASSED\"")},
      {"env_flag_beats_env_file", {"--rm", "--env-file", file.string(), "-e", "GREETING=flag"}, sh("echo $GREETING")},
  });
}

TEST_F(PodmanDiffTest, Users) {
  check_all({
      {"default_user", {"--rm"}, sh("id; echo $HOME")},
      {"user_by_name", {"--rm", "-u", "app"}, sh("id; echo $HOME")},
      {"user_by_uid_in_passwd", {"--rm", "-u", "1000"}, sh("id; echo $HOME")},
      {"user_uid_gid", {"--rm", "-u", "1000:50"}, sh("id; echo $HOME")},
      {"user_name_group", {"--rm", "-u", "app:root"}, sh("id")},
      {"user_root_other_gid", {"--rm", "-u", "0:1000"}, sh("id; echo $HOME")},
      {"user_unknown_uid", {"--rm", "-u", "4321:4321"}, sh("id; echo $HOME")},
      {"user_nobody", {"--rm", "-u", "nobody"}, sh("id; echo $HOME")},
      {"user_name_group_name", {"--rm", "-u", "nobody:staff"}, sh("id")},
      {"unknown_user", {"--rm", "-u", "nosuchuser"}, {"id"}, {}, Stderr::kBothOrNeither},
      {"unknown_group", {"--rm", "-u", "app:nosuchgroup"}, {"id"}, {}, Stderr::kBothOrNeither},
      {"non_root_cannot_write_root", {"--rm", "-u", "app"}, sh("touch /x 2>/dev/null; echo $?")},
  });
}

TEST_F(PodmanDiffTest, StandardInput) {
  check_all({
      {"stdin_closed_without_i", {"--rm"}, sh("cat; echo eof"), std::string("ignored\n")},
      {"stdin_with_i", {"--rm", "-i"}, sh("cat; echo eof"), std::string("line one\nline two\n")},
      {"stdin_empty_with_i", {"--rm", "-i"}, sh("cat; echo eof"), std::string()},
      {"stdin_read_exit_code", {"--rm", "-i"}, sh("read a; read b; echo \"$b-$a\"; exit 5"), std::string("1\n2\n")},
      {"stdin_unterminated_line", {"--rm", "-i"}, {"wc", "-c"}, std::string("no newline")},
      {"stdin_is_not_a_terminal", {"--rm", "-i"}, sh("tty; echo $?")},
  });
}

TEST_F(PodmanDiffTest, Terminal) {
  check_all({
      // With -t both streams are the terminal: \r\n line ends, stderr merged into stdout.
      {"tty_term_and_device", {"--rm", "-t"}, sh("echo $TERM; tty; echo to-stderr >&2")},
      {"tty_exit_code", {"--rm", "-t"}, sh("exit 4")},
  });
}

TEST_F(PodmanDiffTest, Detached) {
  Case c{"detached_prints_id", {"-d", "--name", "diff-detached"}, sh("echo started")};
  SCOPED_TRACE("case " + c.name);
  Running theirs(podman_->dir(), c.name + ".podman", podman_->run_argv(c, podman_image_), podman_->env(), c.input);
  Running ours(cli_->data_dir(), c.name + ".fcvm", fcvm_argv(c), {}, c.input);
  Outcome mine = ours.finish();
  Outcome oracle = theirs.finish();
  ASSERT_EQ(oracle.code, 0) << describe(oracle);
  ASSERT_EQ(mine.code, 0) << describe(mine);
  // The line each prints is its own handle for the container: compare its shape.
  EXPECT_EQ(oracle.out.size(), 65u) << oracle.out;
  compare(c, oracle, mine);
  // Both keep the container's output and exit code for later.
  Outcome waited = podman_->run_now({"wait", "diff-detached"});
  EXPECT_EQ(waited.out, "0\n") << describe(waited);
  EXPECT_TRUE(cli_->wait_status("diff-detached", "exited", std::chrono::seconds(120)));
  EXPECT_EQ(cli_->record("diff-detached").value("exit_code", -1), 0);
  Outcome podman_logs = podman_->run_now({"logs", "diff-detached"});
  CliResult fcvm_logs = cli_->run({"logs", "diff-detached"});
  EXPECT_EQ(podman_logs.out, "started\n");
  EXPECT_EQ(fcvm_logs.out, podman_logs.out);
  EXPECT_EQ(podman_->run_now({"rm", "diff-detached"}).code, 0);
  EXPECT_EQ(cli_->run({"rm", "diff-detached"}).code, 0);
}

TEST_F(PodmanDiffTest, RemoveLeavesNoContainer) {
  check({"rm_then_gone", {"--rm", "--name", "diff-removed"}, sh("echo gone")});
  Outcome ps = podman_->run_now({"ps", "--all", "--quiet"});
  EXPECT_EQ(ps.out, "");
  EXPECT_TRUE(cli_->ls().empty()) << cli_->ls().dump();
}

TEST_F(PodmanDiffTest, HealthFlagsLeaveTheRunAlone) {
  check_all({
      // podman without systemd logs that it cannot schedule checks: stderr is not compared.
      {"health_cmd_foreground", {"--rm", "--health-cmd", "true"}, sh("echo served"), {}, Stderr::kIgnore},
  });
}

TEST_F(PodmanDiffTest, Hostname) {
  check_all({
      {"hostname_flag", {"--rm", "--hostname", "web1"}, sh("hostname; echo $HOSTNAME")},
      // The same command again: a restored startup snapshot gets its hostname at GO.
      {"hostname_flag_restored", {"--rm", "--hostname", "web3"}, sh("hostname; echo $HOSTNAME")},
      {"hostname_variable_without_shell", {"--rm", "--hostname", "web4"}, {"awk", "BEGIN { print ENVIRON[\"HOSTNAME\"] }"}},
      {"hostname_flag_with_name", {"--rm", "--name", "diff-named", "--hostname", "Web-2.example"}, sh("hostname")},
      {"hostname_in_etc_hosts", {"--rm", "--hostname", "web1"}, sh("grep -c web1 /etc/hosts")},
      {"hostname_file_newline", {"--rm", "--hostname", "web1"}, sh("cat /etc/hostname; echo .")},
      {"hostname_underscore", {"--rm", "--hostname", "a_b"}, {"hostname"}, {}, Stderr::kExact},
      {"hostname_too_long", {"--rm", "--hostname", std::string(70, 'x')}, {"hostname"}, {}, Stderr::kBothOrNeither},
  });
}

// What `podman stop` / `fcvm stop` send first: SIGTERM, or --stop-signal.
TEST_F(PodmanDiffTest, StopSignal) {
  const auto trapping = [](const std::string& sig, int code) {
    return sh("trap 'echo got " + sig + "; exit " + std::to_string(code) + "' " + sig +
              "; echo ready; while :; do sleep 0.1; done");
  };
  check_stop({"stop_default_sends_term", {}, trapping("TERM", 3)}, {});
  check_stop({"stop_signal_name", {"--stop-signal", "USR1"}, trapping("USR1", 7)}, {});
  check_stop({"stop_signal_number", {"--stop-signal", "12"}, trapping("USR2", 9)}, {});
  check_stop({"stop_untrapped_pid1", {}, sh("echo ready; exec sleep 600")}, {"--time", "1"});
}

// --read-only: the root is read-only, podman's read-only tmpfs mounts stay writable.
TEST_F(PodmanDiffTest, ReadOnly) {
  const std::string probe = "for d in / /etc /home/app /tmp /var/tmp /run /dev/shm; do "
                            "touch $d/probe 2>/dev/null && echo \"$d writable\" || echo \"$d read-only\"; done";
  check_all({
      {"read_only_root", {"--rm", "--read-only"}, sh(probe)},
      {"read_only_off", {"--rm"}, sh(probe)},
      {"read_only_error_message", {"--rm", "--read-only"}, sh("echo x > /x")},
      {"read_only_tmp_mode", {"--rm", "--read-only"}, sh("stat -c '%a %U' /tmp /var/tmp")},
      {"read_only_hostname", {"--rm", "--read-only", "--hostname", "ro-host"}, sh("hostname; grep -c ro-host /etc/hosts")},
      // The same command again: a restored read-only snapshot names its new host in /etc too.
      {"read_only_hostname_restored", {"--rm", "--read-only", "--hostname", "ro-host2"}, sh("hostname; grep -c ro-host /etc/hosts")},
      {"read_only_as_user", {"--rm", "--read-only", "-u", "app"}, sh("touch /home/app/x 2>/dev/null; echo $?; touch /tmp/x; echo $?")},
  });
}

// --init: an init is PID 1 and the process its child; it forwards signals and reaps.
TEST_F(PodmanDiffTest, Init) {
  check_all({
      {"init_parent_is_pid1", {"--rm", "--init"}, sh("echo $PPID; [ $$ -ne 1 ] && echo not-pid-1")},
      // PID 1's name is each one's own (podman-init, fcvm-init): compare what it is to the process.
      {"init_is_parent_of_the_process", {"--rm", "--init"}, sh("ps -o pid,ppid | awk '$1 == 1 { print \"init ppid\", $2 }'")},
      {"init_exit_code", {"--rm", "--init"}, sh("exit 7")},
      {"init_main_process_terminates_itself", {"--rm", "--init"}, sh("kill -TERM $$; echo survived")},
      {"init_main_process_kills_itself", {"--rm", "--init"}, sh("kill -9 $$; echo survived")},
      {"init_missing_program", {"--rm", "--init"}, {"no-such-program"}, {}, Stderr::kBothOrNeither},
      {"init_with_user", {"--rm", "--init", "-u", "app"}, sh("id -u; echo $PPID")},
      {"init_stdin", {"--rm", "--init", "-i"}, sh("cat; echo eof"), std::string("through the init\n")},
      {"init_tty", {"--rm", "--init", "-t"}, sh("tty; echo $PPID")},
  });
  check_stop({"init_stop_forwards_term", {"--init"}, sh("echo ready; exec sleep 600")}, {"--time", "30"});
  check_stop({"init_stop_signal_forwarded", {"--init", "--stop-signal", "USR1"},
              sh("trap 'echo got USR1; exit 5' USR1; echo ready; while :; do sleep 0.1; done")}, {});
}

// Bad flags and values: podman's own errors, exit 125, nothing run.
TEST_F(PodmanDiffTest, UsageErrors) {
  check_all({
      {"unknown_flag", {"--rm", "--no-such-flag"}, {"true"}, {}, Stderr::kBothOrNeither},
      {"bad_memory", {"--rm", "-m", "lots"}, {"true"}, {}, Stderr::kBothOrNeither},
      {"bad_port", {"--rm", "-p", "99999:80"}, {"true"}, {}, Stderr::kBothOrNeither},
      {"bad_stop_signal", {"--rm", "--stop-signal", "BOGUS"}, {"true"}, {}, Stderr::kBothOrNeither},
      {"stop_signal_out_of_range", {"--rm", "--stop-signal", "65"}, {"true"}, {}, Stderr::kBothOrNeither},
  });
}

}  // namespace
}  // namespace fcvm::test
