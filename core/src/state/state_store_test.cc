#include "state/state_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include "fcvm/atomic_file.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

// The identity of a process that existed and is gone (forked, looked at, reaped).
ProcessIdentity dead_identity() {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return {};
  const pid_t child = ::fork();
  if (child == 0) {
    char c;
    ::close(pipe_fds[1]);
    (void)!::read(pipe_fds[0], &c, 1);  // until the parent closes its end
    ::_exit(0);
  }
  ::close(pipe_fds[0]);
  auto id = ProcessIdentity::of(child);
  ::close(pipe_fds[1]);
  ::waitpid(child, nullptr, 0);
  return id.ok() ? *id : ProcessIdentity{};
}

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = TempDir::create("fcvm-state-test-");
    ASSERT_TRUE(made.ok()) << made.status().message();
    tmp_dir_ = std::move(*made);
    data_dir_ = tmp_dir_.path();
  }

  VmRecord record(const std::string& name, ProcessIdentity process = ProcessIdentity::self()) {
    VmRecord r;
    r.name = name;
    r.process = process;
    r.status = VmStatus::running;
    return r;
  }

  TempDir tmp_dir_;
  fs::path data_dir_;
};

TEST_F(StateStoreTest, CreateFillsIdNameAndTime) {
  StateStore store(data_dir_);
  EXPECT_EQ(store.dir(), data_dir_ / "state");
  auto r = store.create(record(""));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(is_valid_vm_id(r->id));
  EXPECT_EQ(r->name.rfind("fcvm-", 0), 0u);
  EXPECT_FALSE(r->created.empty());
  EXPECT_TRUE(fs::exists(data_dir_ / "state" / (r->id + ".json")));

  auto got = store.get(r->id);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(to_json(*got), to_json(*r));
}

TEST_F(StateStoreTest, FindByNameIdAndPid) {
  StateStore store(data_dir_);
  auto a = store.create(record("alpha"));
  auto b = store.create(record("beta", dead_identity()));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(store.find_by_name("beta")->id, b->id);
  EXPECT_EQ(store.find("alpha")->id, a->id);
  EXPECT_EQ(store.find(b->id)->name, "beta");
  EXPECT_EQ(store.find_by_pid(::getpid())->id, a->id);
  EXPECT_EQ(store.find("gamma").status().code(), Errc::not_found);
  EXPECT_EQ(store.find("gamma").status().message(),
            "no VM named or with id 'gamma'");
  EXPECT_EQ(store.find_by_pid(1).status().code(), Errc::not_found);
  EXPECT_EQ(store.get("../../etc").status().code(), Errc::invalid_argument);
}

TEST_F(StateStoreTest, FindByPidPrefersTheLiveRecord) {
  StateStore store(data_dir_);
  ProcessIdentity stale = ProcessIdentity::self();
  stale.start_time += 1;  // our PID, someone else's start: a record from a recycled PID
  auto old_one = store.create(record("stale", stale));
  auto live = store.create(record("live"));
  ASSERT_TRUE(old_one.ok() && live.ok());
  EXPECT_FALSE(old_one->alive());
  EXPECT_TRUE(live->alive());
  EXPECT_EQ(store.find_by_pid(::getpid())->id, live->id);
}

TEST_F(StateStoreTest, TakenNameIsRefused) {
  StateStore store(data_dir_);
  auto live = store.create(record("web"));
  ASSERT_TRUE(live.ok());
  auto again = store.create(record("web"));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Errc::already_exists);
  EXPECT_EQ(again.status().message(), "name 'web' is in use by vm " + live->id + " (pid " +
                                          std::to_string(::getpid()) + "); pick another name");

  // A dead process's record keeps its name until gc.
  auto dead = store.create(record("old", dead_identity()));
  ASSERT_TRUE(dead.ok());
  auto reuse = store.create(record("old"));
  ASSERT_FALSE(reuse.ok());
  EXPECT_EQ(reuse.status().code(), Errc::already_exists);
  EXPECT_EQ(reuse.status().message(),
            "name 'old' is used by an exited VM (" + dead->id +
                "); remove it with 'fcvm rm old' or pick another");

  ASSERT_TRUE(store.remove(dead->id).ok());
  EXPECT_TRUE(store.create(record("old")).ok());
}

TEST_F(StateStoreTest, InvalidNamesAndIdsAreRefused) {
  StateStore store(data_dir_);
  for (const char* name : {"../x", "a/b", "UPPER", ".x"}) {
    auto r = store.create(record(name));
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), Errc::invalid_argument) << name;
  }
  VmRecord bad_id = record("fine");
  bad_id.id = "../escape";
  EXPECT_EQ(store.create(bad_id).status().code(), Errc::invalid_argument);
  EXPECT_FALSE(fs::exists(data_dir_ / "escape.json"));

  VmRecord fixed = record("fixed");
  fixed.id = "00000000000a";
  ASSERT_TRUE(store.create(fixed).ok());
  fixed.name = "other";
  EXPECT_EQ(store.create(fixed).status().code(), Errc::already_exists);
}

TEST_F(StateStoreTest, UpdateIsReadModifyWrite) {
  StateStore store(data_dir_);
  auto r = store.create(record("vm1"));
  ASSERT_TRUE(r.ok());
  auto updated = store.update(r->id, [](VmRecord& rec) {
    rec.status = VmStatus::exited;
    rec.exit_code = 7;
    rec.extra["note"] = "hi";
    return ok_status();
  });
  ASSERT_TRUE(updated.ok()) << updated.status().message();
  auto got = store.get(r->id);
  EXPECT_EQ(got->status, VmStatus::exited);
  EXPECT_EQ(got->exit_code, 7);
  EXPECT_EQ(got->extra["note"], "hi");

  // A failing change writes nothing.
  auto failed = store.update(r->id, [](VmRecord& rec) {
    rec.status = VmStatus::failed;
    return error(Errc::io, "nope");
  });
  EXPECT_EQ(failed.status().message(), "nope");
  EXPECT_EQ(store.get(r->id)->status, VmStatus::exited);

  // Renames are checked like creates; ids never change.
  ASSERT_TRUE(store.create(record("vm2")).ok());
  auto clash = store.update(r->id, [](VmRecord& rec) {
    rec.name = "vm2";
    return ok_status();
  });
  EXPECT_EQ(clash.status().code(), Errc::already_exists);
  auto id_change = store.update(r->id, [](VmRecord& rec) {
    rec.id = "ffffffffffff";
    return ok_status();
  });
  EXPECT_EQ(id_change.status().code(), Errc::internal);
  EXPECT_EQ(store.update("ffffffffffff", [](VmRecord&) { return ok_status(); }).status().code(),
            Errc::not_found);
}

TEST_F(StateStoreTest, RemoveAndList) {
  StateStore store(data_dir_);
  EXPECT_TRUE(store.list()->empty());  // no state dir yet
  auto a = store.create(record("a"));
  auto b = store.create(record("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  // Stray files (an interrupted write's temp file, the lock) are not records.
  std::ofstream(data_dir_ / "state" / ".x.json.tmp.1.2") << "{";
  std::ofstream(data_dir_ / "state" / "notes.txt") << "hi";
  auto all = store.list();
  ASSERT_TRUE(all.ok()) << all.status().message();
  EXPECT_EQ(all->size(), 2u);
  ASSERT_TRUE(store.remove(a->id).ok());
  EXPECT_EQ(store.remove(a->id).code(), Errc::not_found);
  EXPECT_EQ(store.list()->size(), 1u);
}

// Keeps the lines written to it, for tests of what is logged.
class CapturingLogger final : public Logger {
 public:
  void write(LogLevel level, std::string_view message) const override {
    lines_.push_back(std::string(to_string(level)) + ": " + std::string(message));
  }
  bool enabled(LogLevel) const override { return true; }
  std::shared_ptr<const Logger> child(std::string_view) const override { return null_logger(); }
  std::vector<std::string> sorted_lines() const {
    auto out = lines_;
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  mutable std::vector<std::string> lines_;
};

// One damaged record must not block the others: it is skipped with a warning that names
// the file and the fix, and the healthy records are still listed, found and created.
TEST_F(StateStoreTest, UnreadableRecordsAreSkippedWithAWarning) {
  auto log = std::make_shared<CapturingLogger>();
  StateStore store(data_dir_, log);
  auto a = store.create(record("a"));
  auto newer = store.create(record("newer"));
  auto broken = store.create(record("broken"));
  ASSERT_TRUE(a.ok() && newer.ok() && broken.ok());
  auto j = to_json(*newer);
  j["version"] = 9;
  const fs::path newer_file = data_dir_ / "state" / (newer->id + ".json");
  ASSERT_TRUE(write_file_atomic(newer_file, j.dump()).ok());
  const fs::path broken_file = data_dir_ / "state" / (broken->id + ".json");
  const std::string text = to_json(*broken).dump();
  ASSERT_TRUE(write_file_atomic(broken_file, text.substr(0, text.size() / 2)).ok());

  auto all = store.list();
  ASSERT_TRUE(all.ok()) << all.status().message();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ(all->front().name, "a");
  const std::string fix = "; if no VM uses it, move it out of " + (data_dir_ / "state").string() +
                          " (its VM's files stay until you remove them)";
  std::vector<std::string> expected = {
      "warning: skipping state record " + broken_file.string() + ": not valid JSON at byte " +
          std::to_string(text.size() / 2 + 1) + " of " + std::to_string(text.size() / 2) +
          " (truncated or edited?)" + fix,
      "warning: skipping state record " + newer_file.string() +
          ": written by a newer fcvm (record version 9, this fcvm reads up to 1); use that "
          "fcvm or upgrade this one" + fix};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(log->sorted_lines(), expected);
  EXPECT_EQ(store.find("a")->id, a->id);
  EXPECT_TRUE(store.create(record("c")).ok());
}

// `stop <id>` must never hit another VM whose name is that id.
TEST_F(StateStoreTest, ANameEqualToAnotherRecordsIdIsRefused) {
  StateStore store(data_dir_);
  auto a = store.create(record("a"));
  ASSERT_TRUE(a.ok());
  auto clash = store.create(record(a->id));
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.status().code(), Errc::already_exists);
  EXPECT_EQ(clash.status().message(),
            "name '" + a->id + "' is the id of vm 'a', so commands would not know which one "
            "you mean; pick another name");
  auto b = store.create(record("b"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(store.update(b->id, [&](VmRecord& r) {
                  r.name = a->id;
                  return ok_status();
                }).status().code(),
            Errc::already_exists);
}

// Temp files of writers that died mid-write are swept; a live writer's file stays.
TEST_F(StateStoreTest, SweepRemovesOnlyTempFilesOfDeadWriters) {
  StateStore store(data_dir_);
  auto a = store.create(record("a"));
  ASSERT_TRUE(a.ok());
  const fs::path dir = data_dir_ / "state";
  const pid_t dead_pid = dead_identity().pid;
  const fs::path stale = dir / ("." + a->id + ".json.tmp." + std::to_string(dead_pid) + ".42");
  const fs::path live = dir / ("." + a->id + ".json.tmp." + std::to_string(::getpid()) + ".7");
  const fs::path other = dir / ".not-a-temp-file";
  for (const auto& p : {stale, live, other}) std::ofstream(p) << "{";
  auto swept = store.sweep_temp_files();
  ASSERT_TRUE(swept.ok()) << swept.status().message();
  EXPECT_EQ(*swept, 1);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(dir / (a->id + ".json")));
}

// Records and the lock file are private to their owner.
TEST_F(StateStoreTest, FilesAreOwnerOnly) {
  const mode_t old = ::umask(022);  // the test's own umask must not matter
  StateStore store(data_dir_);
  auto a = store.create(record("a"));
  ::umask(old);
  ASSERT_TRUE(a.ok());
  struct stat st {};
  ASSERT_EQ(::stat((data_dir_ / "state" / (a->id + ".json")).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat((data_dir_ / "state" / ".lock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// Many writers in threads and in other processes hammer one record (and create their own),
// while readers check that every file they see is a whole, valid record. The final counter
// proves no update was lost, i.e. the read-modify-write really is under one lock.
TEST_F(StateStoreTest, ConcurrentWritersAcrossThreadsAndProcesses) {
  constexpr int kProcesses = 3, kThreads = 6, kUpdates = 25;
  StateStore store(data_dir_);
  auto shared = store.create(record("shared"));
  ASSERT_TRUE(shared.ok());
  const std::string id = shared->id;

  const auto work = [&](StateStore& s, const std::string& who) -> int {
    int failures = 0;
    auto mine = s.create(record(who));
    if (!mine.ok()) ++failures;
    for (int i = 0; i < kUpdates; ++i) {
      auto r = s.update(id, [&](VmRecord& rec) {
        rec.extra["count"] = rec.extra.value("count", 0) + 1;
        rec.extra["last"] = who;
        return ok_status();
      });
      if (!r.ok()) ++failures;
      if (mine.ok()) {
        auto own = s.update(mine->id, [&](VmRecord& rec) {
          rec.extra["i"] = i;
          return ok_status();
        });
        if (!own.ok()) ++failures;
      }
    }
    return failures;
  };

  // Fork before any thread exists, so the children start single-threaded and clean.
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      StateStore own(data_dir_);
      ::_exit(work(own, "proc-" + std::to_string(p)) == 0 ? 0 : 1);
    }
    children.push_back(child);
  }

  std::atomic<bool> done{false};
  std::atomic<int> thread_failures{0}, torn{0}, reads{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i) {
    readers.emplace_back([&] {
      while (!done.load()) {
        auto all = store.list();
        if (!all.ok()) ++torn;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(data_dir_ / "state", ec)) {
          if (e.path().extension() != ".json" || e.path().filename().string()[0] == '.') continue;
          auto text = read_file(e.path());
          if (!text.ok()) continue;  // removed meanwhile; nothing removes here, but be fair
          auto j = nlohmann::json::parse(*text, nullptr, false);
          if (j.is_discarded() || !vm_record_from_json(j).ok()) ++torn;
          ++reads;
        }
      }
    });
  }
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] { thread_failures += work(store, "thread-" + std::to_string(t)); });
  }
  for (auto& w : writers) w.join();
  for (pid_t child : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << child;
  }
  done = true;
  for (auto& r : readers) r.join();

  EXPECT_EQ(thread_failures.load(), 0);
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(reads.load(), 0);
  auto final_record = store.get(id);
  ASSERT_TRUE(final_record.ok());
  EXPECT_EQ(final_record->extra["count"], (kProcesses + kThreads) * kUpdates);
  EXPECT_EQ(store.list()->size(), static_cast<size_t>(1 + kProcesses + kThreads));
}

// Everyone wants the same name at once: exactly one create wins, across processes too.
TEST_F(StateStoreTest, RacingCreatesOfOneNameHaveOneWinner) {
  constexpr int kProcesses = 3, kThreads = 4;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      StateStore own(data_dir_);
      auto r = own.create(record("contested"));
      ::_exit(r.ok() ? 0 : r.status().code() == Errc::already_exists ? 3 : 1);
    }
    children.push_back(child);
  }
  StateStore store(data_dir_);
  std::atomic<int> wins{0}, other_errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto r = store.create(record("contested"));
      if (r.ok()) {
        ++wins;
      } else if (r.status().code() != Errc::already_exists) {
        ++other_errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (pid_t child : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 0) ++wins;
    if (WEXITSTATUS(status) == 1) ++other_errors;
  }
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(other_errors.load(), 0);
  EXPECT_EQ(store.list()->size(), 1u);
}

}  // namespace
}  // namespace fcvm
