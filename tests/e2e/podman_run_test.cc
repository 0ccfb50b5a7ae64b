// `fcvm podman run` and the commands around it, against real microVMs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <fstream>
#include <map>
#include <thread>

#include "fcvm/unique_fd.h"
#include "fcvm_cli.h"

namespace fcvm::test {
namespace {

// Runs once per VMM plugin (TEST_P; see the instantiation at the end); a plugin that cannot
// run here (vmm-firecracker without its binary or hardware KVM) is SKIPPED with its probe's
// reason. A plain TEST_F of this fixture runs with fcvm's default VMM.
class PodmanRunTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
    const bool parameterised = ::testing::UnitTest::GetInstance()->current_test_info()->value_param() != nullptr;
    const std::string vmm = parameterised ? GetParam() : "";
    auto& suite = suites_[vmm];
    if (!suite.cli) {
      suite.cli = std::make_unique<FcvmCli>(vmm);
      suite.unavailable = suite.cli->vmm_unavailable();
    }
    if (!suite.unavailable.empty()) GTEST_SKIP() << suite.unavailable;
    cli_ = suite.cli.get();
  }

  // `podman run` with the test kernel.
  CliResult podman_run(std::vector<std::string> args) const {
    args.insert(args.begin(), {"podman", "run", "--kernel", FcvmCli::kernel().string()});
    return cli_->run(args);
  }
  std::vector<std::string> run_args(std::vector<std::string> args) const {
    args.insert(args.begin(), {"podman", "run", "--kernel", FcvmCli::kernel().string()});
    return args;
  }

  static void TearDownTestSuite() {
    suites_.clear();
    cli_ = nullptr;
  }

  // One data dir per VMM, shared by that VMM's tests.
  struct Suite {
    std::unique_ptr<FcvmCli> cli;
    std::string unavailable;
  };
  static inline std::map<std::string, Suite> suites_;
  static inline FcvmCli* cli_ = nullptr;
};

TEST_P(PodmanRunTest, ExampleImagePrintsGreetingFromGuestKernel) {
  auto r = podman_run({"--rm", FcvmCli::hello_image()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Hello from fcvm!"), std::string::npos) << r.out;
  // The guest runs our kernel (6.1 from linux-source), not the host's.
  EXPECT_NE(r.out.find("Linux 6.1."), std::string::npos) << r.out;
  EXPECT_TRUE(cli_->ls().empty()) << "--rm left a record";
}

TEST_P(PodmanRunTest, ExitCodePassesThrough) {
  auto r = podman_run({"--rm", FcvmCli::hello_image(), "sh", "-c", "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(r.code, 7) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_NE(r.err.find("err\n"), std::string::npos) << r.err;
}

TEST_P(PodmanRunTest, KilledBySignalGives128PlusSignal) {
  auto r = podman_run({"--rm", FcvmCli::hello_image(), "sh", "-c", "kill -9 $$"});
  EXPECT_EQ(r.code, 137) << r.err;
}

TEST_P(PodmanRunTest, EnvArgsEntrypointWorkdirAndUserReachTheProcess) {
  auto r = podman_run({"--rm", "-e", "FOO=bar baz", "-w", "/tmp", "-u", "1000:1001", "--entrypoint",
                       "/bin/sh", FcvmCli::hello_image(), "-c",
                       "echo \"$FOO|$(pwd)|$(id -u):$(id -g)|$0|$1\"", "first", "second"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "bar baz|/tmp|1000:1001|first|second\n");
}

TEST_P(PodmanRunTest, EnvFileAndCpusReachTheGuest) {
  const auto env_file = cli_->data_dir() / "test.env";
  std::ofstream(env_file) << "# settings\nGREETING=hi there\n";
  auto r = podman_run({"--rm", "--env-file", env_file.string(), "--cpus", "2", "-m", "300",
                       FcvmCli::hello_image(), "sh", "-c", "echo \"$GREETING|$(nproc)\""});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "hi there|2\n");
}

TEST_P(PodmanRunTest, SigintStopsTheForegroundVmAndCleansUp) {
  auto fg = cli_->start(run_args({"--rm", "--name", "interrupted", FcvmCli::hello_image(), "sh", "-c",
                                  "echo ready; exec sleep 600"}));
  ASSERT_TRUE(cli_->wait_status("interrupted", "running", std::chrono::seconds(60)));
  const auto running = cli_->record("interrupted");
  const auto vm_dir = running["vm_dir"].get<std::string>();
  ASSERT_NE(live_vmm(running), 0) << running.dump();
  // SIGINT only once the container's process runs: before that it ends a boot (125).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto container_ready = [&] {
    std::ifstream log(vm_dir + "/container.log");
    return std::string(std::istreambuf_iterator<char>(log), {}).find("ready") != std::string::npos;
  };
  while (!container_ready()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the container never printed 'ready'";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(fg.signal(SIGINT).ok());
  auto st = fg.wait(std::chrono::seconds(60));
  ASSERT_TRUE(st.has_value()) << "fcvm did not stop on SIGINT";
  // sleep got the SIGINT inside the guest, as podman's signal proxy passes it: 128 + 2.
  EXPECT_EQ(st->code, 130);
  EXPECT_TRUE(cli_->record("interrupted").is_null());
  EXPECT_EQ(live_vmm(running), 0);
  EXPECT_FALSE(std::filesystem::exists(vm_dir));
}

TEST_P(PodmanRunTest, ImageEnvAndWorkdirApplyByDefault) {
  auto r = podman_run({"--rm", FcvmCli::hello_image(), "sh", "-c", "echo \"$PATH|$(pwd)|$HOME\""});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("/bin"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("|/root\n"), std::string::npos) << r.out;
}

TEST_P(PodmanRunTest, MissingCommandInImageIs127) {
  auto r = podman_run({"--rm", FcvmCli::hello_image(), "/no/such/program"});
  EXPECT_EQ(r.code, 127) << r.err;
  EXPECT_NE(r.err.find("/no/such/program"), std::string::npos) << r.err;
  EXPECT_TRUE(cli_->ls().empty());
}

TEST_P(PodmanRunTest, MissingImageIsAClearErrorAndLeavesNothing) {
  auto r = podman_run({"--rm", "--name", "ghost", "oci:/nonexistent/layout:nope"});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("oci:/nonexistent/layout:nope"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  EXPECT_TRUE(cli_->record("ghost").is_null());
  const auto vms = cli_->data_dir() / "vms";
  EXPECT_TRUE(!std::filesystem::exists(vms) || std::filesystem::is_empty(vms));
}

TEST_P(PodmanRunTest, MissingKernelIsAClearErrorAndLeavesNothing) {
  FcvmCli empty;  // a data dir where 'fcvm setup kernel' never ran
  auto r = empty.run({"podman", "run", "--rm", "--name", "nokernel", FcvmCli::hello_image()});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("fcvm setup kernel"), std::string::npos) << r.err;
  EXPECT_TRUE(empty.ls().empty());

  r = cli_->run({"podman", "run", "--rm", "--kernel", "/nonexistent/vmlinux", FcvmCli::hello_image()});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("/nonexistent/vmlinux"), std::string::npos) << r.err;
}

// podman exits 125 for an error of its own, bad flags and values included.
TEST_P(PodmanRunTest, BadFlagsAreUsageErrors) {
  EXPECT_EQ(podman_run({"--memory", "lots", FcvmCli::hello_image()}).code, 125);
  EXPECT_EQ(podman_run({"-p", "99999:80", FcvmCli::hello_image()}).code, 125);
  EXPECT_EQ(podman_run({"--no-such-flag", FcvmCli::hello_image()}).code, 125);
  auto r = podman_run({"--name", "../etc", FcvmCli::hello_image()});
  EXPECT_EQ(r.code, 125);
  EXPECT_TRUE(cli_->ls().empty());
}

TEST_P(PodmanRunTest, KeptRecordShowsExitCodeUntilGc) {
  auto r = podman_run({"--name", "kept", FcvmCli::hello_image(), "sh", "-c", "echo logged; exit 3"});
  ASSERT_EQ(r.code, 3) << r.err;
  auto rec = cli_->record("kept");
  ASSERT_FALSE(rec.is_null());
  EXPECT_EQ(rec["status"], "exited");
  EXPECT_EQ(rec["exit_code"], 3);
  auto logs = cli_->run({"logs", "kept"});
  EXPECT_EQ(logs.out, "logged\n");
  auto console = cli_->run({"logs", "--console", "kept"});
  EXPECT_EQ(console.code, 0);
  // The name stays taken until gc.
  EXPECT_EQ(podman_run({"--name", "kept", FcvmCli::hello_image()}).code, 125);
  EXPECT_EQ(cli_->run({"gc"}).code, 0);
  EXPECT_TRUE(cli_->record("kept").is_null());
}

TEST_P(PodmanRunTest, DetachedVmExecLogsInspectStop) {
  auto r = podman_run({"-d", "--name", "bg", FcvmCli::hello_image(), "sh", "-c",
                       "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "bg\n");
  auto rec = cli_->record("bg");
  ASSERT_FALSE(rec.is_null());
  EXPECT_EQ(rec["status"], "running");
  EXPECT_TRUE(rec["alive"].get<bool>());

  auto ex = cli_->run({"exec", "-e", "X=1", "bg", "--", "sh", "-c", "echo $X $HOME; cat /etc/hostname; exit 5"});
  EXPECT_EQ(ex.code, 5) << ex.err;
  EXPECT_EQ(ex.out, "1 /root\nbg\n");
  auto missing = cli_->run({"exec", "bg", "/no/such"});
  EXPECT_EQ(missing.code, 127);
  auto no_check = cli_->run({"healthcheck", "run", "bg"});
  EXPECT_EQ(no_check.code, 125);
  EXPECT_NE(no_check.err.find("bg has no health check"), std::string::npos) << no_check.err;

  auto inspect = cli_->run({"inspect", "bg"});
  ASSERT_EQ(inspect.code, 0);
  auto doc = nlohmann::json::parse(inspect.out);
  EXPECT_EQ(doc["name"], "bg");
  EXPECT_TRUE(doc.contains("image_config"));

  auto stop = cli_->run({"stop", "bg"});
  EXPECT_EQ(stop.code, 0) << stop.err;
  rec = cli_->record("bg");
  ASSERT_FALSE(rec.is_null());
  EXPECT_FALSE(rec["alive"].get<bool>());
  EXPECT_EQ(rec["status"], "exited");
  EXPECT_EQ(cli_->run({"logs", "bg"}).out, "started\nbye\n");
  EXPECT_EQ(cli_->run({"gc"}).code, 0);
  EXPECT_TRUE(cli_->record("bg").is_null());
}

TEST_P(PodmanRunTest, StopTimeReachesTheGuest) {
  auto r = podman_run({"-d", "--name", "stubborn", FcvmCli::hello_image(), "sh", "-c",
                       "trap '' TERM; echo ready; while true; do sleep 0.1; done"});
  ASSERT_EQ(r.code, 0) << r.err;
  // Stop only once the trap is set.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (cli_->run({"logs", "stubborn"}).out != "ready\n" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto stop = cli_->run({"stop", "-t", "1", "stubborn"});
  EXPECT_EQ(stop.code, 0);
  EXPECT_EQ(stop.err, "") << "the guest should have killed it after 1 s, not fcvm";
  auto rec = cli_->record("stubborn");
  ASSERT_FALSE(rec.is_null());
  EXPECT_EQ(rec["exit_code"], 137);  // SIGTERM ignored, SIGKILL after the grace
  EXPECT_EQ(cli_->run({"gc"}).code, 0);
}

// Speaks the control protocol by hand (u32 length LE | u8 type | payload), as any client
// could: malformed requests must get an error reply and leave the VM running.
struct ControlReply {
  int type = -1;
  nlohmann::json body;
};

ControlReply control_exchange(const std::filesystem::path& socket, const std::string& bytes) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return {};
  if (::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) return {};
  std::string in;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof buf)) > 0;) in.append(buf, static_cast<size_t>(n));
  if (in.size() < 5) return {};
  const auto* u = reinterpret_cast<const unsigned char*>(in.data());
  const std::uint32_t length = u[0] | (u[1] << 8) | (u[2] << 16) | (static_cast<std::uint32_t>(u[3]) << 24);
  if (in.size() < 5 + length) return {};
  return {u[4], nlohmann::json::parse(in.substr(5, length), nullptr, false)};
}

std::string control_message(std::uint8_t type, const std::string& payload) {
  std::string out;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((payload.size() >> (8 * i)) & 0xff));
  out.push_back(static_cast<char>(type));
  return out + payload;
}

TEST_P(PodmanRunTest, MalformedControlRequestsGetErrorRepliesAndTheVmRunsOn) {
  auto r = podman_run({"-d", "--name", "sturdy", FcvmCli::hello_image(), "sleep", "600"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::filesystem::path socket =
      std::filesystem::path(cli_->record("sturdy")["vm_dir"].get<std::string>()) / "control.sock";
  constexpr std::uint8_t kRequest = 0x01, kReply = 0x81;
  const std::string bad_requests[] = {
      control_message(kRequest, R"({"args":[1]})"),
      control_message(kRequest, R"({"version":1,"request":"exec","args":[1]})"),
      control_message(kRequest, R"({"version":1,"request":"exec","args":["true"],"cwd":7})"),
      control_message(kRequest, R"({"version":99,"request":"stop"})"),
      control_message(kRequest, "not json"),
      control_message(0x02, "stdin before any request"),
      control_message(0x7f, "{}"),                   // unknown message type
      std::string("\xff\xff\xff\xff\x01", 5),        // oversize length
  };
  for (size_t i = 0; i < std::size(bad_requests); ++i) {
    auto reply = control_exchange(socket, bad_requests[i]);
    ASSERT_EQ(reply.type, kReply) << "no reply to bad request #" << i;
    EXPECT_EQ(reply.body["ok"], false) << reply.body.dump();
    EXPECT_TRUE(reply.body["error"].is_string()) << reply.body.dump();
  }
  auto rec = cli_->record("sturdy");
  EXPECT_EQ(rec["status"], "running");
  EXPECT_TRUE(rec["alive"].get<bool>());
  auto ex = cli_->run({"exec", "sturdy", "echo", "still here"});
  EXPECT_EQ(ex.code, 0) << ex.err;
  EXPECT_EQ(ex.out, "still here\n");
  EXPECT_EQ(cli_->run({"stop", "-t", "1", "sturdy"}).code, 0);
  EXPECT_EQ(cli_->run({"gc"}).code, 0);
}

TEST_P(PodmanRunTest, TwoVmsRunAtOnce) {
  auto a = cli_->start(run_args({"--rm", "--name", "one", FcvmCli::hello_image(), "sh", "-c", "sleep 1; exit 11"}));
  auto b = cli_->start(run_args({"--rm", "--name", "two", FcvmCli::hello_image(), "sh", "-c", "sleep 1; exit 12"}));
  auto sa = a.wait(std::chrono::seconds(120));
  auto sb = b.wait(std::chrono::seconds(120));
  ASSERT_TRUE(sa && sb);
  EXPECT_EQ(sa->code, 11);
  EXPECT_EQ(sb->code, 12);
  EXPECT_TRUE(cli_->ls().empty());
}

TEST_P(PodmanRunTest, KillNineTakesTheVmmDownAndGcClearsTheRecord) {
  auto fg = cli_->start(run_args({"--name", "doomed", FcvmCli::hello_image(), "sleep", "600"}));
  ASSERT_TRUE(cli_->wait_status("doomed", "running", std::chrono::seconds(60)));
  const auto running = cli_->record("doomed");
  const auto vm_dir = running["vm_dir"].get<std::string>();
  ASSERT_NE(live_vmm(running), 0) << "no VMM process recorded: " << running.dump();

  ASSERT_TRUE(fg.signal(SIGKILL).ok());
  fg.wait();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (live_vmm(running) != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(live_vmm(running), 0) << "the VMM outlived its fcvm process";

  auto rec = cli_->record("doomed");
  ASSERT_FALSE(rec.is_null());
  EXPECT_FALSE(rec["alive"].get<bool>());
  auto gc = cli_->run({"gc"});
  EXPECT_EQ(gc.code, 0) << gc.err;
  EXPECT_TRUE(cli_->record("doomed").is_null());
  EXPECT_FALSE(std::filesystem::exists(vm_dir));
}

INSTANTIATE_TEST_SUITE_P(Vmm, PodmanRunTest, ::testing::ValuesIn(kVmmPlugins),
                         [](const auto& p) { return test_param_name(p.param); });

}  // namespace
}  // namespace fcvm::test
