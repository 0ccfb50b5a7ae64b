// Clones of one plugin combination, against baselines measured in the same run. The
// combination comes from the environment, as for fcvm_combination_bench, plus the memory
// backend of the clones:
//   FCVM_BENCH_MEMORY   file | memory-uffd | memory-uffd+prefetch
//   FCVM_BENCH_CLONES   how many clones the fleet benchmarks start (default 10)
//
// One source VM (the example image running `sleep`) is snapshotted once; a `snapshot serve`
// with the chosen memory backend serves every clone.
//   BM_SnapshotCreate   `fcvm snapshot create`: the source's pause (from the manifest) and
//                       the command's wall time
//   BM_ColdStart        baseline: `fcvm podman run --rm --no-snapshot IMAGE echo ready` to
//                       the first output
//   BM_BareRestore      baseline (floor): the VMM plugin's restore() of the same snapshot
//                       alone, through the loader: VMM start + state load + resume; no
//                       session, disks, network or agent (combinations without a network)
//   BM_CloneExecReady   `fcvm snapshot run --pid SERVE --exec echo ready` to the first
//                       output, / BM_ColdStart and / BM_BareRestore
//   BM_ClonePss         PSS (anon, file, shmem) of 1 and of N running clones' VMM processes
//                       against the source VM's; page faults the page server served
//   BM_ClonesAtOnce     N clones started at once vs one after another, until all run
#include <benchmark/benchmark.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "fcvm/child_process.h"
#include "fcvm/file_clone.h"
#include "fcvm/storage.h"
#include "fcvm/temp_dir.h"
#include "fcvm/vmm.h"
#include "plugin/plugin_registry.h"

namespace {

namespace fs = std::filesystem;
namespace fb = fcvm::bench;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

using fb::env_or;
using fb::plugin_flags;
using fb::reps;

// Restores and clones take well under a second: at least 3 samples even in --quick.
int cheap_reps() { return std::max(3, reps()); }
int fleet_size() { return std::max(1, std::atoi(env_or("FCVM_BENCH_CLONES", "10").c_str())); }
std::string memory() { return env_or("FCVM_BENCH_MEMORY", "file"); }
bool with_network() { return env_or("FCVM_BENCH_NETWORK", "none") != "none"; }

std::vector<std::string> fcvm(std::vector<std::string> head, const std::vector<std::string>& tail = {}) {
  for (auto& f : plugin_flags()) head.push_back(f);
  head.insert(head.end(), tail.begin(), tail.end());
  return fb::fcvm_argv(head);
}

std::string run_or_throw(const std::vector<std::string>& argv) {
  auto out = fcvm::run_command(argv);
  if (!out) throw std::runtime_error(out.status().message());
  return *out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

void report(benchmark::State& state, const std::string& name, const std::vector<double>& v) {
  state.counters[name + "_median"] = median(v);
  state.counters[name + "_min"] = *std::min_element(v.begin(), v.end());
  state.counters[name + "_max"] = *std::max_element(v.begin(), v.end());
}

pid_t vmm_pid_of(pid_t fcvm_pid) {
  for (pid_t child : fb::children_of(fcvm_pid)) return child;
  throw std::runtime_error("process " + std::to_string(fcvm_pid) + " has no VMM child");
}

json record_of(const std::string& name) { return json::parse(run_or_throw(fb::fcvm_argv({"inspect", name}))); }

// Sum of every number under a key naming faults in a record's JSON: the page server's
// counters, wherever `fcvm ls --json` puts them. nullopt when there are none.
std::optional<double> faults_in(const json& doc) {
  std::optional<double> sum;
  std::function<void(const json&)> walk = [&](const json& j) {
    if (!j.is_object() && !j.is_array()) return;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (j.is_object() && it.key() == "faults" && it->is_number()) {
        sum = sum.value_or(0) + it->get<double>();
      } else {
        walk(*it);
      }
    }
  };
  walk(doc);
  return sum;
}

// The source VM, its snapshot and the serve process, made once and torn down at exit.
class Fixture {
 public:
  // Made on first use; a failure is remembered, so later benchmarks skip with it at once.
  static Fixture& get() {
    if (!error_.empty()) throw std::runtime_error(error_);
    if (!instance_) {
      try {
        instance_.reset(new Fixture);
      } catch (const std::exception& e) {
        error_ = e.what();
        throw;
      }
    }
    return *instance_;
  }
  // Stops the serve and the source and removes the snapshot; before the scratch dir goes.
  static void reset() { instance_.reset(); }

  const std::string& tag() const { return tag_; }
  const std::string& source() const { return source_; }
  pid_t serve_pid() const { return serve_ ? serve_->pid() : -1; }
  double pause_ms() const { return pause_ms_; }
  double create_s() const { return create_s_; }
  fs::path snapshot_dir() const { return fb::scratch_dir() / "data" / "snapshots" / tag_; }

  ~Fixture() { teardown(); }

 private:
  void teardown() {
    if (serve_) {
      ::kill(serve_->pid(), SIGTERM);
      (void)serve_->wait(std::chrono::seconds(60));
    }
    (void)fcvm::run_command(fb::fcvm_argv({"stop", source_}));
    (void)fcvm::run_command(fb::fcvm_argv({"snapshot", "rm", "--force", tag_}));
    (void)fcvm::run_command(fb::fcvm_argv({"gc"}));
  }
  Fixture() {
    Cleanup cleanup{this};
    const auto id = std::to_string(::getpid());
    source_ = "bench-clone-src-" + id;
    tag_ = "bench-" + id;
    fb::timed_run(fcvm({"podman", "run", "--kernel", fb::guest_kernel()},
                       {"-d", "--name", source_, fb::hello_image(), "sleep", "3600"}));
    const auto start = Clock::now();
    run_or_throw(fb::fcvm_argv({"snapshot", "create", source_, "--tag", tag_}));
    create_s_ = std::chrono::duration<double>(Clock::now() - start).count();
    for (const auto& s : json::parse(run_or_throw(fb::fcvm_argv({"snapshot", "ls", "--json"})))) {
      if (s.value("tag", "") == tag_) pause_ms_ = s.value("pause_ms", 0.0);
    }
    std::vector<std::string> serve = {"snapshot", "serve", tag_};
    if (memory() != "file") {
      serve.insert(serve.end(), {"--memory", "memory-uffd", "--prefetch",
                                 memory() == "memory-uffd+prefetch" ? "on" : "off"});
    }
    fcvm::SpawnOptions opts;
    opts.argv = fcvm(serve);
    opts.stderr_fd = STDERR_FILENO;
    auto child = fcvm::ChildProcess::spawn(opts);
    if (!child) throw std::runtime_error(child.status().message());
    serve_ = std::move(*child);
    // The serve records itself once it listens; its record is what clones look for.
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    for (;;) {
      auto rec = fcvm::run_command(fb::fcvm_argv({"ls", "--json"}));
      if (rec && rec->find("\"serve\"") != std::string::npos) break;
      if (auto st = serve_->try_wait()) throw std::runtime_error("snapshot serve exited: " + st->describe());
      if (Clock::now() > deadline) throw std::runtime_error("snapshot serve did not start in 60 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    cleanup.self = nullptr;
  }
  // Tears down what a constructor that throws half made (the destructor will not run).
  struct Cleanup {
    Fixture* self;
    ~Cleanup() {
      if (self) self->teardown();
    }
  };

  static inline std::unique_ptr<Fixture> instance_;
  static inline std::string error_;
  std::string source_, tag_;
  double pause_ms_ = 0, create_s_ = 0;
  std::optional<fcvm::ChildProcess> serve_;
};

double g_cold = 0, g_bare_restore = 0;

bool skip_without_vm(benchmark::State& state) {
  if (const auto why = fb::vm_skip_reason(); !why.empty()) {
    state.SkipWithError(why.c_str());
    return true;
  }
  return false;
}

template <class F>
void guarded(benchmark::State& state, F body) {
  if (skip_without_vm(state)) return;
  try {
    body();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void BM_SnapshotCreate(benchmark::State& state) {
  guarded(state, [&] {
    auto& f = Fixture::get();
    for (auto _ : state) state.SetIterationTime(f.create_s());
    state.counters["pause_ms"] = f.pause_ms();
    state.counters["create_s"] = f.create_s();
  });
}
BENCHMARK(BM_SnapshotCreate)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

void BM_ColdStart(benchmark::State& state) {
  guarded(state, [&] {
    const auto argv = fcvm({"podman", "run", "--kernel", fb::guest_kernel()},
                           {"--rm", "--no-snapshot", fb::hello_image(), "echo", "ready"});
    std::vector<double> v;
    for (auto _ : state) {
      for (int i = 0; i < reps(); ++i) v.push_back(fb::timed_run(argv).first_output_s);
      state.SetIterationTime(median(v));
    }
    report(state, "exec_ready_s", v);
    g_cold = median(v);
  });
}
BENCHMARK(BM_ColdStart)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

// The snapshot's drives for a bare restore: read-only ones as they are, writable ones copied
// (the guest must not write into the snapshot).
std::vector<fcvm::Drive> bare_drives(const json& manifest, const fs::path& snap, const fs::path& dir) {
  std::vector<fcvm::Drive> drives;
  for (const auto& d : manifest.at("disks").at("drives")) {
    fcvm::Drive drive = d.get<fcvm::Drive>();
    if (drive.path.is_relative()) drive.path = snap / drive.path;
    if (!drive.read_only) {
      // Holes stay holes (as the storage plugin's own clone): a full copy of a sparse disk
      // would leave writeback running into the timed restore.
      const auto copy = dir / drive.path.filename();
      if (auto st = fcvm::clone_file(drive.path, copy, fcvm::CloneMode::create_new); !st.ok()) {
        throw std::runtime_error(st.message());
      }
      drive.path = copy;
    }
    drives.push_back(drive);
  }
  return drives;
}

void BM_BareRestore(benchmark::State& state) {
  guarded(state, [&] {
    if (with_network()) {
      throw std::runtime_error("measured in the combination without a network (the snapshot's NIC needs its namespace)");
    }
    if (memory() != "file") throw std::runtime_error("measured with file memory (the floor)");
    auto& f = Fixture::get();
    const json manifest = json::parse(std::ifstream(f.snapshot_dir() / "manifest.json"));
    fcvm::PluginRegistry registry({FCVM_PLUGIN_DIR}, nullptr);
    const auto data = fb::scratch_dir() / "bare-restore";
    fs::create_directories(data);
    auto vmm = registry.create_as<fcvm::VmmBackend>(env_or("FCVM_BENCH_VMM", "vmm-qemu"), fcvm::PluginKind::vmm,
                                                    fcvm::PluginContext{fcvm::null_logger(), json::object(), data});
    if (!vmm) throw std::runtime_error(vmm.status().message());
    std::vector<double> v;
    for (auto _ : state) {
      for (int i = 0; i < cheap_reps(); ++i) {
        auto dir = fcvm::TempDir::create((data / "vm-").string());
        if (!dir) throw std::runtime_error(dir.status().message());
        fcvm::RestoreSpec spec;
        spec.vm.name = "bare-restore";
        spec.vm.dir = dir->path();
        spec.vm.drives = bare_drives(manifest, f.snapshot_dir(), dir->path());
        spec.vm.agent_socket = dir->path() / "agent.sock";
        spec.vm.console_log = dir->path() / "console.log";
        spec.snapshot = {f.snapshot_dir() / manifest.at("state_file").get<std::string>(),
                         f.snapshot_dir() / manifest.at("memory_file").get<std::string>()};
        spec.memory = {fcvm::MemorySourceKind::file, spec.snapshot.memory};
        const auto start = Clock::now();
        auto vm = (*vmm)->restore(spec);
        const double took = std::chrono::duration<double>(Clock::now() - start).count();
        if (!vm) throw std::runtime_error(vm.status().message());
        (*vm)->kill();
        v.push_back(took);
      }
      state.SetIterationTime(median(v));
    }
    report(state, "restore_s", v);
    g_bare_restore = median(v);
  });
}
BENCHMARK(BM_BareRestore)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

void BM_CloneExecReady(benchmark::State& state) {
  guarded(state, [&] {
    auto& f = Fixture::get();
    const auto argv = fcvm({"snapshot", "run", "--pid", std::to_string(f.serve_pid())},
                           {"--exec", "echo", "ready"});
    std::vector<double> v;
    for (auto _ : state) {
      for (int i = 0; i < cheap_reps(); ++i) v.push_back(fb::timed_run(argv).first_output_s);
      state.SetIterationTime(median(v));
    }
    report(state, "exec_ready_s", v);
    if (g_cold > 0) state.counters["vs_cold_start"] = median(v) / g_cold;
    if (g_bare_restore > 0) state.counters["vs_bare_restore"] = median(v) / g_bare_restore;
  });
}
BENCHMARK(BM_CloneExecReady)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

// Detached clones of the fixture's serve, stopped however the benchmark ends.
struct Fleet {
  std::vector<std::string> names;
  ~Fleet() {
    for (const auto& n : names) (void)fcvm::run_command(fb::fcvm_argv({"stop", n}));
  }
  std::vector<std::string> start_argv(const std::string& name) const {
    return fcvm({"snapshot", "run", "--pid", std::to_string(Fixture::get().serve_pid())},
                {"-d", "--name", name});
  }
  // Starts `n` clones one after another (each returns once its clone runs).
  void start_sequential(int n, const std::string& prefix) {
    for (int i = 0; i < n; ++i) {
      names.push_back(prefix + std::to_string(i));
      fb::timed_run(start_argv(names.back()));
    }
  }
  // Starts `n` clones at once and waits for every one.
  void start_together(int n, const std::string& prefix) {
    std::vector<fcvm::ChildProcess> children;
    for (int i = 0; i < n; ++i) {
      names.push_back(prefix + std::to_string(i));
      fcvm::SpawnOptions opts;
      opts.argv = start_argv(names.back());
      opts.stdout_fd = -1;
      auto child = fcvm::ChildProcess::spawn(opts);
      if (!child) throw std::runtime_error(child.status().message());
      children.push_back(std::move(*child));
    }
    for (auto& c : children) {
      auto st = c.wait();
      if (!st || !st->success()) throw std::runtime_error("a clone did not start together with the others");
    }
  }
  fb::Pss pss() const {
    fb::Pss sum;
    for (const auto& n : names) {
      const auto p = fb::pss_of(vmm_pid_of(record_of(n).at("pid").get<pid_t>()));
      sum.anon += p.anon;
      sum.file += p.file;
      sum.shmem += p.shmem;
    }
    return sum;
  }
};

void BM_ClonePss(benchmark::State& state) {
  guarded(state, [&] {
    auto& f = Fixture::get();
    const auto one_vm = fb::pss_of(vmm_pid_of(record_of(f.source()).at("pid").get<pid_t>()));
    const auto id = std::to_string(::getpid());
    for (auto _ : state) {
      Fleet one;
      one.start_sequential(1, "bench-pss1-" + id + "-");
      const auto p1 = one.pss();
      Fleet many;
      many.start_sequential(fleet_size() - 1, "bench-pssn-" + id + "-");
      many.names.push_back(one.names.front());
      const auto pn = many.pss();
      many.names.pop_back();
      const double mib = 1 << 20;
      state.counters["vm_pss_mib"] = static_cast<double>(one_vm.total()) / mib;
      state.counters["clone1_pss_mib"] = static_cast<double>(p1.total()) / mib;
      state.counters["clones_n"] = fleet_size();
      state.counters["clonesN_pss_mib"] = static_cast<double>(pn.total()) / mib;
      state.counters["clonesN_pss_anon_mib"] = static_cast<double>(pn.anon) / mib;
      state.counters["clonesN_pss_file_mib"] = static_cast<double>(pn.file) / mib;
      state.counters["clonesN_pss_shmem_mib"] = static_cast<double>(pn.shmem) / mib;
      state.counters["clonesN_vs_one_vm"] = static_cast<double>(pn.total()) / static_cast<double>(one_vm.total());
      double disk = 0;
      for (const auto& n : one.names) {
        disk += static_cast<double>(fb::allocated_bytes(record_of(n).at("vm_dir").get<std::string>(), true));
      }
      state.counters["clone_disk_mib"] = disk / mib;
      // The page server publishes its counters at most once a second.
      double faults = 0;
      bool counted = false;
      for (int tries = 0; tries < 50 && !counted && memory() != "file"; ++tries) {
        if (tries > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        for (const auto& rec : json::parse(run_or_throw(fb::fcvm_argv({"ls", "--json"})))) {
          if (auto n = faults_in(rec)) faults += *n, counted = true;
        }
      }
      if (counted) state.counters["faults_served"] = faults;
      state.SetIterationTime(1);
    }
  });
}
BENCHMARK(BM_ClonePss)->UseManualTime()->Iterations(1);

void BM_ClonesAtOnce(benchmark::State& state) {
  guarded(state, [&] {
    const auto id = std::to_string(::getpid());
    for (auto _ : state) {
      double seq = 0, together = 0;
      {
        Fleet fleet;
        const auto start = Clock::now();
        fleet.start_sequential(fleet_size(), "bench-seq-" + id + "-");
        seq = std::chrono::duration<double>(Clock::now() - start).count();
      }
      {
        Fleet fleet;
        const auto start = Clock::now();
        fleet.start_together(fleet_size(), "bench-par-" + id + "-");
        together = std::chrono::duration<double>(Clock::now() - start).count();
      }
      state.counters["one_after_another_s"] = seq;
      state.counters["at_once_s"] = together;
      state.counters["at_once_vs_one_after_another"] = together / seq;
      state.SetIterationTime(together);
    }
  });
}
BENCHMARK(BM_ClonesAtOnce)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);


}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  Fixture::reset();
  fb::remove_scratch_dir();
  return 0;
}
