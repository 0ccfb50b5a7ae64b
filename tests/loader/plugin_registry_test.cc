// PluginRegistry against real shared objects: one fixture plugin per directory (built by
// this folder's CMakeLists.txt from core/src/plugin/testdata), so each test decides what
// the search path holds.
#include "plugin/plugin_registry.h"

#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "fcvm/network.h"
#include "fcvm/vmm.h"
#include "memory/file_memory.h"
#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

fs::path fixture_dir(const std::string& id) { return fs::path(FCVM_LOADER_FIXTURES) / id; }
fs::path fixture_file(const std::string& id) {
  return fs::canonical(fixture_dir(id) / (id + ".so"));
}

PluginContext test_context(nlohmann::json config = nlohmann::json::object()) {
  return PluginContext{null_logger(), std::move(config), "/nonexistent/fcvm-data"};
}

// The only refusal a registry over `dirs` reports.
std::string only_refusal(std::vector<fs::path> dirs) {
  PluginRegistry registry(std::move(dirs), nullptr);
  const auto& refused = registry.refusals();
  EXPECT_EQ(refused.size(), 1u);
  EXPECT_TRUE(registry.plugins().empty());
  return refused.empty() ? std::string() : refused.front().message;
}

// A scratch directory for one test; the test fails (throws) when it cannot be made.
TempDir scratch_dir() {
  auto made = TempDir::create("fcvm-loader-test-");
  if (!made.ok()) throw std::runtime_error(made.status().message());
  return std::move(*made);
}

TEST(PluginRegistry, ListsAGoodPluginWithItsDescriptor) {
  PluginRegistry registry({fixture_dir("good")}, nullptr);
  ASSERT_EQ(registry.plugins().size(), 1u);
  const PluginInfo& info = registry.plugins().front();
  EXPECT_EQ(info.name, "fixture-good");
  EXPECT_EQ(info.kind, PluginKind::network);
  EXPECT_EQ(info.version, "1.2.3");
  EXPECT_EQ(info.description, "loader test fixture");
  EXPECT_EQ(info.file, fixture_file("good"));
  EXPECT_TRUE(registry.refusals().empty());
  EXPECT_EQ(registry.find("fixture-good"), &info);
  EXPECT_EQ(registry.find("fixture"), nullptr);
}

TEST(PluginRegistry, CreatesABackendThatGetsItsContext) {
  PluginRegistry registry({fixture_dir("good")}, nullptr);
  auto made = registry.create_as<NetworkBackend>("fixture-good", PluginKind::network,
                                                 test_context({{"greeting", "hello"}}));
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ((*made)->kind(), PluginKind::network);
  EXPECT_THAT((*made)->probe().reason, HasSubstr("greeting=hello"));
  // One type_info across the boundary: the SDK's types live in the SDK library only.
  auto plain = registry.create("fixture-good", test_context());
  ASSERT_TRUE(plain.ok());
  EXPECT_NE(std::dynamic_pointer_cast<NetworkBackend>(*plain), nullptr);
}

TEST(PluginRegistry, TellsWhichPluginMadeABackend) {
  std::shared_ptr<const Backend> backend;
  {
    PluginRegistry registry({fixture_dir("good")}, nullptr);
    registry.add_builtin(file_memory_descriptor());
    auto memory = registry.create_as<MemoryBackend>("file", PluginKind::memory, test_context());
    ASSERT_TRUE(memory.ok());
    EXPECT_EQ(PluginRegistry::plugin_name_of(*memory), "file");
    auto made = registry.create_as<NetworkBackend>("fixture-good", PluginKind::network,
                                                   test_context());
    ASSERT_TRUE(made.ok());
    backend = *made;
  }
  EXPECT_EQ(PluginRegistry::plugin_name_of(backend), "fixture-good");
  EXPECT_EQ(PluginRegistry::plugin_version_of(backend), "1.2.3");
  EXPECT_EQ(PluginRegistry::plugin_version_of(std::make_shared<FileMemory>()), "");
  EXPECT_EQ(PluginRegistry::plugin_name_of(std::make_shared<FileMemory>()), "");
  EXPECT_EQ(PluginRegistry::plugin_name_of(nullptr), "");
}

TEST(PluginRegistry, BackendOutlivesTheRegistryAndTheLibraryStaysLoaded) {
  std::shared_ptr<NetworkBackend> backend;
  {
    PluginRegistry registry({fixture_dir("good")}, nullptr);
    auto made = registry.create_as<NetworkBackend>("fixture-good", PluginKind::network,
                                                   test_context());
    ASSERT_TRUE(made.ok()) << made.status().message();
    backend = *made;
  }
  // The plugin's code runs after the registry is gone.
  auto lease = backend->setup(NetworkRequest{"vm1", "web", {}});
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->plugin, "fixture-good");
  EXPECT_EQ(lease->tap, "tap-vm1");
  EXPECT_TRUE(backend->probe().available);
  backend.reset();  // runs the plugin's destructor

  void* handle = ::dlopen(fixture_file("good").c_str(), RTLD_NOW | RTLD_NOLOAD);
  EXPECT_NE(handle, nullptr) << "the plugin library was unloaded";
  if (handle) ::dlclose(handle);  // drops only the reference RTLD_NOLOAD added
}

TEST(PluginRegistry, RefusesAWrongAbiMajor) {
  const std::string plugin_abi = std::to_string(FCVM_ABI_MAJOR + 1) + "." +
                                 std::to_string(FCVM_ABI_MINOR);
  const std::string host_abi = std::to_string(FCVM_ABI_MAJOR) + "." +
                               std::to_string(FCVM_ABI_MINOR);
  EXPECT_EQ(only_refusal({fixture_dir("abi-major")}),
            fixture_file("abi-major").string() + ": plugin ABI " + plugin_abi +
                " does not match fcvm's ABI " + host_abi +
                "; rebuild the plugin against this fcvm's SDK");
}

TEST(PluginRegistry, RefusesANewerAbiMinor) {
  const std::string plugin_abi = std::to_string(FCVM_ABI_MAJOR) + "." +
                                 std::to_string(FCVM_ABI_MINOR + 1);
  const std::string host_abi = std::to_string(FCVM_ABI_MAJOR) + "." +
                               std::to_string(FCVM_ABI_MINOR);
  EXPECT_EQ(only_refusal({fixture_dir("newer-minor")}),
            fixture_file("newer-minor").string() + ": plugin needs ABI " + plugin_abi +
                " but fcvm provides " + host_abi +
                "; upgrade fcvm or rebuild the plugin against this fcvm's SDK");
}

TEST(PluginRegistry, RefusesAnotherBuildFingerprint) {
  EXPECT_EQ(only_refusal({fixture_dir("fingerprint")}),
            fixture_file("fingerprint").string() +
                ": built with 'compiler=fixture-cc 0.1' but fcvm with '" +
                host_fingerprint() +
                "'; rebuild the plugin with the same compiler, Boost and nlohmann_json as "
                "fcvm");
}

TEST(PluginRegistry, RefusesAnUnknownKind) {
  EXPECT_THAT(only_refusal({fixture_dir("unknown-kind")}),
              AllOf(HasSubstr(fixture_file("unknown-kind").string() + ": "),
                    HasSubstr("plugin 'fixture-unknown-kind' has unknown kind 99"),
                    HasSubstr("rebuild the plugin against this fcvm's SDK")));
}

TEST(PluginRegistry, RefusesAnInvalidName) {
  EXPECT_EQ(only_refusal({fixture_dir("bad-name")}),
            fixture_file("bad-name").string() +
                ": plugin name 'Fixture_Bad' is invalid (it must match [a-z0-9][a-z0-9-]*); "
                "fix the name in the plugin's descriptor");
}

TEST(PluginRegistry, RefusesALibraryWithoutDescriptor) {
  EXPECT_EQ(only_refusal({fixture_dir("not-a-plugin")}),
            fixture_file("not-a-plugin").string() +
                " is not an fcvm plugin (it exports no fcvm_plugin_descriptor_v1); remove it "
                "from the plugin directory, or export a descriptor with FCVM_PLUGIN");
}

TEST(PluginRegistry, RefusesATextFileNamedLikeALibrary) {
  const std::string file = fs::canonical(fixture_dir("text") / "x.so").string();
  EXPECT_THAT(only_refusal({fixture_dir("text")}),
              AllOf(::testing::StartsWith(file + " is not an fcvm plugin (it cannot be loaded: "),
                    HasSubstr("invalid ELF header"),
                    ::testing::EndsWith("); remove it from the plugin directory")));
}

TEST(PluginRegistry, FirstOfTwoSameNamesWinsAndTheSecondIsRefused) {
  {
    PluginRegistry registry({fixture_dir("good"), fixture_dir("duplicate")}, nullptr);
    ASSERT_EQ(registry.plugins().size(), 1u);
    EXPECT_EQ(registry.plugins().front().file, fixture_file("good"));
    ASSERT_EQ(registry.refusals().size(), 1u);
    EXPECT_EQ(registry.refusals().front().file, fixture_file("duplicate"));
    EXPECT_EQ(registry.refusals().front().message,
              fixture_file("duplicate").string() + ": plugin name 'fixture-good' is already "
              "taken by " + fixture_file("good").string() +
                  ", found earlier in the search path; remove one of the two or change the "
                  "plugin directory order");
  }
  PluginRegistry reversed({fixture_dir("duplicate"), fixture_dir("good")}, nullptr);
  ASSERT_EQ(reversed.plugins().size(), 1u);
  EXPECT_EQ(reversed.plugins().front().file, fixture_file("duplicate"));
  ASSERT_EQ(reversed.refusals().size(), 1u);
  EXPECT_EQ(reversed.refusals().front().file, fixture_file("good"));
}

TEST(PluginRegistry, ThrowingFactoryIsAnErrorAndThenARefusal) {
  PluginRegistry registry({fixture_dir("throwing")}, nullptr);
  ASSERT_NE(registry.find("fixture-throwing"), nullptr);
  EXPECT_TRUE(registry.refusals().empty());

  auto made = registry.create("fixture-throwing", test_context());
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), Errc::internal);
  const std::string expected = "plugin 'fixture-throwing' (" +
                               fixture_file("throwing").string() +
                               "): its factory threw: fixture factory exploded; report this to "
                               "the plugin's author (fcvm will not call it again)";
  EXPECT_EQ(made.status().message(), expected);
  ASSERT_EQ(registry.refusals().size(), 1u);
  EXPECT_EQ(registry.refusals().front().message, expected);
  EXPECT_EQ(registry.refusals().front().file, fixture_file("throwing"));

  auto again = registry.create("fixture-throwing", test_context());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().message(), expected);
  EXPECT_EQ(registry.refusals().size(), 1u);
}

TEST(PluginRegistry, ErroringFactoryReturnsItsErrorNamedByPlugin) {
  PluginRegistry registry({fixture_dir("erroring")}, nullptr);
  auto made = registry.create("fixture-erroring", test_context());
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), Errc::invalid_argument);
  EXPECT_EQ(made.status().message(),
            "plugin 'fixture-erroring': plugin_config.fixture-erroring.mode: expected \"fast\"");
  // A config error is not the plugin's fault: it stays usable once the config is fixed.
  EXPECT_TRUE(registry.refusals().empty());
}

TEST(PluginRegistry, TriesEachCanonicalFileOnceAndOnlySoFiles) {
  TempDir tmp = scratch_dir();
  fs::create_directory_symlink(fixture_dir("good"), tmp.path() / "link-to-good");
  std::ofstream(tmp.path() / "README.txt") << "not a library\n";
  std::ofstream(tmp.path() / "fixture.so.1") << "not tried: wrong extension\n";
  fs::create_symlink(fixture_file("good"), tmp.path() / "alias.so");

  PluginRegistry registry({fixture_dir("good"), tmp.path() / "link-to-good", tmp.path(),
                           fixture_dir("good"), tmp.path() / "missing"},
                          nullptr);
  ASSERT_EQ(registry.plugins().size(), 1u);
  EXPECT_EQ(registry.plugins().front().file, fixture_file("good"));
  EXPECT_TRUE(registry.refusals().empty());
}

TEST(PluginRegistry, ListsEverythingSortedByName) {
  PluginRegistry registry({fixture_dir("throwing"), fixture_dir("good"), fixture_dir("erroring")},
                          nullptr);
  registry.add_builtin(file_memory_descriptor());
  std::vector<std::string> names;
  for (const auto& p : registry.plugins()) names.push_back(p.name);
  EXPECT_THAT(names, ::testing::ElementsAre("file", "fixture-erroring", "fixture-good",
                                            "fixture-throwing"));
  EXPECT_EQ(registry.find("file")->file, fs::path());
  EXPECT_EQ(registry.find("file")->kind, PluginKind::memory);
}

TEST(PluginRegistry, UnknownAndRefusedNamesAreExplained) {
  PluginRegistry registry({fixture_dir("good"), fixture_dir("newer-minor")}, nullptr);
  auto missing = registry.create("vmm-nope", test_context());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Errc::not_found);
  EXPECT_EQ(missing.status().message(),
            "no plugin named 'vmm-nope' (found: fixture-good); see 'fcvm plugins', or add its "
            "directory with --plugin-dir");

  auto refused = registry.create("fixture-newer-minor", test_context());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Errc::not_found);
  EXPECT_THAT(refused.status().message(),
              AllOf(::testing::StartsWith("plugin 'fixture-newer-minor' was refused: " +
                                          fixture_file("newer-minor").string()),
                    HasSubstr("upgrade fcvm")));
}

TEST(PluginRegistry, CreateAsChecksTheKind) {
  PluginRegistry registry({fixture_dir("good")}, nullptr);
  auto wrong = registry.create_as<VmmBackend>("fixture-good", PluginKind::vmm, test_context());
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), Errc::invalid_argument);
  EXPECT_EQ(wrong.status().message(), "plugin 'fixture-good' is a network plugin, not vmm");
}

// Built-in descriptors for the checks that need no shared object.
class LyingBackend final : public Backend {
 public:
  PluginKind kind() const override { return PluginKind::memory; }
  Probe probe() override { return Probe::yes(); }
};
Result<std::unique_ptr<Backend>> make_lying(const PluginContext&) {
  return std::unique_ptr<Backend>(std::make_unique<LyingBackend>());
}
Result<std::unique_ptr<Backend>> make_nothing(const PluginContext&) {
  return std::unique_ptr<Backend>();
}
const PluginDescriptor kLying = FCVM_PLUGIN_DESCRIPTOR(
    PluginKind::storage, "storage-lying", "0", "says storage, makes memory", &make_lying);
const PluginDescriptor kEmpty =
    FCVM_PLUGIN_DESCRIPTOR(PluginKind::vmm, "vmm-empty", "0", "makes nothing", &make_nothing);
const PluginDescriptor kShadow = FCVM_PLUGIN_DESCRIPTOR(
    PluginKind::network, "fixture-good", "0", "takes the fixture's name", &make_nothing);
const PluginDescriptor kBadName =
    FCVM_PLUGIN_DESCRIPTOR(PluginKind::vmm, "-vmm", "0", "bad name", &make_nothing);

TEST(PluginRegistry, BuiltinsArePolicedLikeFiles) {
  PluginRegistry registry({fixture_dir("good")}, nullptr);
  registry.add_builtin(kLying);
  registry.add_builtin(kEmpty);
  registry.add_builtin(kShadow);
  registry.add_builtin(kBadName);

  // A built-in added before the scan keeps its name against files.
  ASSERT_NE(registry.find("fixture-good"), nullptr);
  EXPECT_EQ(registry.find("fixture-good")->file, fs::path());
  std::vector<std::string> refused;
  for (const auto& r : registry.refusals()) refused.push_back(r.message);
  EXPECT_THAT(refused,
              ::testing::UnorderedElementsAre(
                  "built-in plugin: plugin name '-vmm' is invalid (it must match "
                  "[a-z0-9][a-z0-9-]*); fix the name in the plugin's descriptor",
                  fixture_file("good").string() +
                      ": plugin name 'fixture-good' is already taken by built-in plugin, "
                      "found earlier in the search path; remove one of the two or change the "
                      "plugin directory order"));

  auto lying = registry.create("storage-lying", test_context());
  ASSERT_FALSE(lying.ok());
  EXPECT_EQ(lying.status().message(),
            "plugin 'storage-lying' (built-in plugin) declares kind storage but made a memory "
            "backend; report this to the plugin's author");
  auto empty = registry.create("vmm-empty", test_context());
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.status().message(), HasSubstr("its factory returned no backend"));
}

TEST(PluginRegistry, BuiltinAddedAfterTheScanIsListed) {
  PluginRegistry registry({}, nullptr);
  EXPECT_TRUE(registry.plugins().empty());
  registry.add_builtin(file_memory_descriptor());
  ASSERT_EQ(registry.plugins().size(), 1u);
  auto memory = registry.create_as<MemoryBackend>("file", PluginKind::memory, test_context());
  ASSERT_TRUE(memory.ok()) << memory.status().message();
  EXPECT_TRUE((*memory)->probe().available);
}

TEST(PluginName, FollowsTheRegistryRule) {
  for (const char* good : {"file", "vmm-qemu", "a", "0", "storage-squashfs2", "x--y", "a-"}) {
    EXPECT_TRUE(valid_plugin_name(good)) << good;
  }
  for (const char* bad : {"", "-a", "Vmm", "vmm_qemu", "vmm qemu", "vmm.qemu", "ü"}) {
    EXPECT_FALSE(valid_plugin_name(bad)) << bad;
  }
}

}  // namespace
}  // namespace fcvm
