// The MemoryBackend contract (core/include/fcvm/memory.h), checked against the built-in
// "file" backend and every memory plugin the build made. No VM: what every backend promises
// before a VMM ever connects.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fcvm/backend_wrapper.h"
#include "fcvm/memory.h"
#include "memory/file_memory.h"
#include "plugin_contract.h"

namespace fcvm::contract {
namespace {

std::vector<std::string> memory_backends() {
  std::vector<std::string> names = {"file"};
  for (const auto& n : plugins_of(PluginKind::memory)) names.push_back(n);
  return names;
}

class MemoryContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-memory-contract-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
    PluginRegistry registry({FCVM_PLUGIN_DIR}, nullptr);
    registry.add_builtin(file_memory_descriptor());
    auto memory = registry.create_as<MemoryBackend>(GetParam(), PluginKind::memory,
                                                    PluginContext{null_logger(), nlohmann::json::object(), dir_.path()});
    ASSERT_TRUE(memory.ok()) << memory.status().message();
    memory_ = std::move(*memory);
    const Probe probe = memory_->probe();
    if (!probe.available) GTEST_SKIP() << GetParam() << " cannot run here: " << probe.reason;
    // A small sparse image with one written page, as a snapshot's memory file.
    image_ = dir_.path() / "mem";
    UniqueFd fd(::open(image_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), 8 << 20), 0);
    ASSERT_EQ(::pwrite(fd.get(), "page", 4, 4096), 4);
    state_ = dir_.path() / "state";
    std::filesystem::create_directories(state_);
  }

  MemoryServeOptions options() const {
    MemoryServeOptions o;
    o.memory_image = image_;
    o.socket = dir_.path() / "memory.sock";
    o.state_dir = state_;
    o.prefetch = false;
    return o;
  }

  TempDir dir_;
  std::shared_ptr<MemoryBackend> memory_;
  std::filesystem::path image_, state_;
};

TEST_P(MemoryContract, ASourceForACloneIsOfTheDeclaredKind) {
  const MemoryCapabilities caps = memory_->capabilities();
  const SnapshotFiles files{dir_.path() / "state-file", image_};
  auto source = memory_->source_for_clone(files, dir_.path() / "clone");
  ASSERT_TRUE(source.ok()) << source.status().message();
  EXPECT_EQ(source->kind, caps.source_kind);
  EXPECT_FALSE(source->path.empty());
  auto again = memory_->source_for_clone(files, dir_.path() / "clone");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->path, source->path) << "idempotent";
}

TEST_P(MemoryContract, ServeGivesAServerExactlyWhenOneIsNeededAndItsSocketGoesWithIt) {
  const auto o = options();
  {
    auto server = memory_->serve(o);
    ASSERT_TRUE(server.ok()) << server.status().message();
    ASSERT_EQ(*server != nullptr, memory_->capabilities().needs_server);
    if (!*server) return;
    EXPECT_GE((*server)->fd(), 0);
    struct stat st {};
    ASSERT_EQ(::stat(o.socket.c_str(), &st), 0) << o.socket;
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_TRUE((*server)->clients().empty());
    EXPECT_TRUE((*server)->dispatch().ok());
    (*server)->expect_client(::getpid());
    (*server)->expect_client(::getpid());  // idempotent
  }
  EXPECT_FALSE(std::filesystem::exists(o.socket)) << "the socket outlived its server";
  EXPECT_TRUE(child_pids().empty());
}

TEST_P(MemoryContract, ServingAMissingImageFailsAndLeavesNothing) {
  auto o = options();
  o.memory_image = dir_.path() / "absent";
  auto server = memory_->serve(o);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), Errc::not_found) << server.status().message();
  EXPECT_FALSE(std::filesystem::exists(o.socket));
  EXPECT_TRUE(std::filesystem::is_empty(state_));
}

TEST_P(MemoryContract, PlaceGivesAForkTheImagesInodeAndRefusesAnExistingName) {
  const auto dest = dir_.path() / "fork.mem";
  ASSERT_TRUE(memory_->place(image_, dest).ok());
  struct stat a {}, b {};
  ASSERT_EQ(::stat(image_.c_str(), &a), 0);
  ASSERT_EQ(::stat(dest.c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "same filesystem: a hardlink, one page cache";
  const Status again = memory_->place(image_, dest);
  EXPECT_EQ(again.code(), Errc::already_exists) << again.message();
  EXPECT_FALSE(memory_->place(dir_.path() / "absent", dir_.path() / "other.mem").ok());
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "other.mem"));
}

class RefusingPlace final : public MemoryBackendWrapper {
 public:
  using MemoryBackendWrapper::MemoryBackendWrapper;
  Status place(const std::filesystem::path&, const std::filesystem::path&) override {
    return error(Errc::io, "injected place failure");
  }
};

TEST_P(MemoryContract, WrapperForwardsEverythingButTheOverriddenCall) {
  RefusingPlace wrapped(memory_);
  EXPECT_EQ(wrapped.place(image_, dir_.path() / "x").message(), "injected place failure");
  EXPECT_EQ(wrapped.capabilities().needs_server, memory_->capabilities().needs_server);
  auto source = wrapped.source_for_clone(SnapshotFiles{dir_.path() / "s", image_}, dir_.path() / "c");
  EXPECT_TRUE(source.ok());
  auto server = wrapped.serve(options());
  EXPECT_TRUE(server.ok()) << server.status().message();
}

INSTANTIATE_TEST_SUITE_P(Backends, MemoryContract, ::testing::ValuesIn(memory_backends()), param_name);

}  // namespace
}  // namespace fcvm::contract
