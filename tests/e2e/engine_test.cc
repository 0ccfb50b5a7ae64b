// The core API (core/src/engine/engine.h) driven directly, as the Docker API service and the
// containerd shim will drive it, against real microVMs: what one front end does, every
// other sees (the CLI is run beside it on the same data dir).
#include <gtest/gtest.h>

#include <poll.h>

#include <thread>

#include "config/config.h"
#include "engine/engine.h"
#include "fcvm_cli.h"

namespace fcvm::test {
namespace {

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = FcvmCli::missing_prerequisite(); !why.empty()) GTEST_SKIP() << why;
    cli_ = std::make_unique<FcvmCli>();
    ConfigInputs in;
    in.data_dir = cli_->data_dir();
    in.env = [](std::string_view) { return std::optional<std::string>(); };
    auto engine = Engine::open(in);
    ASSERT_TRUE(engine.ok()) << engine.status().message();
    engine_ = std::move(engine).value();
  }
  void TearDown() override {
    engine_.reset();
    cli_.reset();  // stops what is left and fails the test for every leak
  }

  ContainerRequest request(std::vector<std::string> args, std::string name) const {
    ContainerRequest r;
    r.image = FcvmCli::hello_image();
    r.process.args = std::move(args);
    r.name = std::move(name);
    r.kernel = FcvmCli::kernel();
    r.startup_snapshot = false;
    return r;
  }

  // Runs `args` in `vm` through an ExecSession, feeding it `input` then EOF; returns
  // {exit code, stdout}.
  std::pair<int, std::string> exec(const std::string& vm, std::vector<std::string> args, const std::string& input) {
    control::ExecRequest req;
    req.args = std::move(args);
    req.stdin = true;
    auto session = engine_->exec(VmRef::named(vm), req);
    EXPECT_TRUE(session.ok()) << session.status().message();
    if (!session.ok()) return {-1, ""};
    EXPECT_TRUE(session->send_stdin(input).ok());
    EXPECT_TRUE(session->close_stdin().ok());
    std::string out;
    while (!session->closed()) {
      pollfd p{session->fd(), static_cast<short>(POLLIN | (session->queued() ? POLLOUT : 0)), 0};
      ::poll(&p, 1, 1000);
      if (p.revents & POLLOUT) {
        EXPECT_TRUE(session->write_queued().ok());
      }
      if (!(p.revents & (POLLIN | POLLHUP))) continue;
      auto events = session->receive();
      EXPECT_TRUE(events.ok()) << events.status().message();
      if (!events.ok()) break;
      for (const auto& e : *events) {
        if (e.kind == ExecSession::Event::Kind::stdout_data) out += e.data;
        if (e.kind == ExecSession::Event::Kind::exited) return {e.exit_code, out};
        EXPECT_NE(e.kind, ExecSession::Event::Kind::refused) << e.data;
      }
    }
    ADD_FAILURE() << "the exec session closed without an exit";
    return {-1, out};
  }

  std::string status_of(const std::string& name) {
    ListFilter filter;
    filter.all = true;
    filter.name = name;
    auto views = engine_->list(filter);
    EXPECT_TRUE(views.ok());
    return views.ok() && views->size() == 1 ? views->front().status : "absent";
  }

  std::unique_ptr<FcvmCli> cli_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, ADetachedVmIsSeenByTheCliAndEveryOperationWorksOnIt) {
  auto watcher = engine_->watch_events();
  ASSERT_TRUE(watcher.ok()) << watcher.status().message();
  // A front end follows events on a thread of its own while it works.
  std::vector<std::string> kinds;
  std::thread follower([&, w = std::move(watcher).value()]() mutable {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
    while (std::chrono::steady_clock::now() < deadline && (kinds.empty() || kinds.back() != "remove")) {
      auto events = w.next(std::chrono::milliseconds(200));
      if (!events.ok()) {
        ADD_FAILURE() << events.status().message();
        return;
      }
      for (const auto& e : *events) {
        EXPECT_EQ(e.name, "api");
        kinds.push_back(to_string(e.kind));
      }
    }
  });

  auto req = request({"sleep", "600"}, "api");
  req.detach = true;
  auto started = engine_->run(req);
  ASSERT_TRUE(started.ok()) << started.status().message();
  EXPECT_EQ(started->name, "api");
  // Another front end (the CLI) sees the VM the engine started.
  EXPECT_EQ(cli_->record("api")["status"], "running");

  auto [code, out] = exec("api", {"cat"}, "through stdin\n");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, "through stdin\n");
  std::string collected;
  auto failed = engine_->exec_collect(*engine_->find(VmRef::named("api")), {"sh", "-c", "echo out; exit 3"},
                                      [&](bool is_stderr, std::string_view bytes) {
                                        if (!is_stderr) collected += bytes;
                                      });
  ASSERT_TRUE(failed.ok()) << failed.status().message();
  EXPECT_EQ(*failed, 3);
  EXPECT_EQ(collected, "out\n");

  auto stats = engine_->stats({VmRef::named("api")}, std::chrono::milliseconds(300));
  ASSERT_TRUE(stats.ok()) << stats.status().message();
  ASSERT_EQ(stats->size(), 1u);
  EXPECT_EQ(stats->front().name, "api");
  EXPECT_EQ(stats->front().memory_limit_bytes, std::uint64_t{256} << 20);
  ASSERT_TRUE(stats->front().pss_bytes.has_value());
  EXPECT_GT(*stats->front().pss_bytes, 0u);
  EXPECT_GE(stats->front().cpu_percent, 0.0);
  EXPECT_EQ(stats->front().pids, 2u) << "the agent and sleep";

  // The CLI's stats and top-level views are the engine's figures.
  auto cli_stats = cli_->run({"stats", "--no-stream", "--format", "json", "api"});
  ASSERT_EQ(cli_stats.code, 0) << cli_stats.err;
  auto cli_doc = nlohmann::json::parse(cli_stats.out);
  ASSERT_EQ(cli_doc.size(), 1u);
  EXPECT_EQ(cli_doc[0]["name"], "api");
  EXPECT_EQ(cli_doc[0]["memory_limit_bytes"], std::uint64_t{256} << 20);
  EXPECT_GT(cli_doc[0]["pss_bytes"].get<std::uint64_t>(), 0u);
  auto table = cli_->run({"stats", "--no-stream"});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("MEM USAGE / LIMIT"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("268.4MB"), std::string::npos) << "256 MiB, in podman's units: " << table.out;

  // top lists the guest's processes, the container's among them, by the agent's own binary.
  auto top = engine_->top(VmRef::named("api"));
  ASSERT_TRUE(top.ok()) << top.status().message();
  EXPECT_EQ(top->rfind("USER", 0), 0u) << *top;
  EXPECT_NE(top->find("sleep 600\n"), std::string::npos) << *top;
  auto cli_top = cli_->run({"top", "api"});
  EXPECT_EQ(cli_top.code, 0) << cli_top.err;
  EXPECT_NE(cli_top.out.find("sleep 600"), std::string::npos) << cli_top.out;

  ASSERT_TRUE(engine_->pause(VmRef::named("api")).ok());
  EXPECT_EQ(status_of("api"), "paused");
  EXPECT_EQ(cli_->record("api")["status"], "paused");
  ASSERT_TRUE(engine_->unpause(VmRef::named("api")).ok());
  EXPECT_EQ(status_of("api"), "running");

  auto inspected = engine_->inspect(VmRef::named("api"));
  ASSERT_TRUE(inspected.ok());
  EXPECT_EQ((*inspected)["name"], "api");
  EXPECT_TRUE((*inspected)["alive"].get<bool>());
  EXPECT_EQ((*inspected)["extra"]["machine"]["memory_mib"], 256);

  auto removed_running = engine_->remove(VmRef::named("api"), false);
  ASSERT_FALSE(removed_running.ok());
  EXPECT_NE(removed_running.status().message().find("api is running"), std::string::npos);

  auto stopped = engine_->stop(VmRef::named("api"), std::chrono::seconds(1));
  ASSERT_TRUE(stopped.ok()) << stopped.status().message();
  EXPECT_FALSE(stopped->killed);
  EXPECT_NE(status_of("api"), "running");

  auto removed = engine_->remove(VmRef::named("api"), false);
  ASSERT_TRUE(removed.ok()) << removed.status().message();
  EXPECT_TRUE(removed->removed) << removed->problem;
  EXPECT_EQ(status_of("api"), "absent");
  EXPECT_TRUE(cli_->record("api").is_null());

  // Every step of its life was an event, in order.
  follower.join();
  EXPECT_EQ(kinds, (std::vector<std::string>{"create", "start", "died", "remove"}));
}

TEST_F(EngineTest, AnAttachedRunReturnsTheContainersCodeAndRmLeavesNoRecord) {
  auto req = request({"sh", "-c", "exit 7"}, "fg");
  req.remove = true;
  auto outcome = engine_->run(req);
  ASSERT_TRUE(outcome.ok()) << outcome.status().message();
  EXPECT_EQ(outcome->exit_code, 7);
  EXPECT_EQ(status_of("fg"), "absent");
}

TEST_F(EngineTest, ClonesOfASnapshotStartAsManyAsAsked) {
  auto req = request({"sleep", "600"}, "origin");
  req.detach = true;
  ASSERT_TRUE(engine_->run(req).ok());
  auto snap = engine_->snapshot_create(VmRef::named("origin"), std::string("base"), false);
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  EXPECT_EQ(snap->tag, "base");

  CloneRequest clone;
  clone.snapshot = "base";
  clone.name = "twin";
  clone.detach = true;
  clone.count = 2;
  auto clones = engine_->clone(clone);
  ASSERT_TRUE(clones.ok()) << clones.status().message();
  EXPECT_EQ(clones->names, (std::vector<std::string>{"twin-1", "twin-2"}));
  // Each clone has its own disk: what one writes, the other does not see.
  EXPECT_EQ(exec("twin-1", {"sh", "-c", "echo one > /root/mark && sync"}, "").first, 0);
  EXPECT_EQ(exec("twin-1", {"cat", "/root/mark"}, "").second, "one\n");
  EXPECT_NE(exec("twin-2", {"cat", "/root/mark"}, "").first, 0);
  auto views = engine_->snapshots();
  ASSERT_TRUE(views.ok());
  ASSERT_EQ(views->size(), 1u);
  EXPECT_EQ(views->front().snapshot.manifest.tag, "base");

  for (const auto& name : {"twin-1", "twin-2", "origin"}) {
    EXPECT_TRUE(engine_->stop(VmRef::named(name), std::chrono::seconds(1)).ok());
  }
  EXPECT_TRUE(engine_->snapshot_remove("base", false).ok());
}

TEST_F(EngineTest, BadInputIsInvalidArgumentAndCreatesNothing) {
  auto bad_name = engine_->run(request({"true"}, "Not A Name"));
  ASSERT_FALSE(bad_name.ok());
  EXPECT_EQ(bad_name.status().code(), Errc::invalid_argument) << bad_name.status().message();

  VmRef both{std::string("x"), 1};
  EXPECT_EQ(engine_->stop(both, std::chrono::seconds(1)).status().code(), Errc::invalid_argument);
  EXPECT_EQ(engine_->stop(VmRef::named("x"), std::chrono::seconds(-1)).status().code(), Errc::invalid_argument);
  EXPECT_EQ(engine_->find(VmRef::named("nope")).status().code(), Errc::not_found);
  CloneRequest clone;
  clone.snapshot = "s";
  clone.count = 2;  // without detach
  EXPECT_EQ(engine_->clone(clone).status().code(), Errc::invalid_argument);
  EXPECT_EQ(engine_->snapshot_create(VmRef::named("nope"), std::nullopt, false).status().code(), Errc::not_found);

  ListFilter all;
  all.all = true;
  auto views = engine_->list(all);
  ASSERT_TRUE(views.ok());
  EXPECT_TRUE(views->empty());
}

}  // namespace
}  // namespace fcvm::test
