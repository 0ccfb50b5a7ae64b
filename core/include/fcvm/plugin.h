// The plugin descriptor: what a backend shared object exports, and what the host checks
// before it calls anything in it.
//
// A plugin is a shared object that exports exactly one `fcvm::PluginDescriptor` under the
// Boost.DLL alias `fcvm_plugin_descriptor_v1` (declare it with FCVM_DECLARE_PLUGIN below). The host checks,
// in order: the ABI major matches and the host's minor is at least the plugin's; the build
// fingerprint matches the host's (C++ has no ABI promise across a .so boundary, so plugin
// and host must share compiler, standard library ABI, Boost and nlohmann_json); the kind
// is known; the name is not taken. Only then is `create` called.
//
// What keeps a plugin library loaded: (1) the host's registry keeps every library it opened
// in a process-wide keeper until the process exits, so no library is ever unloaded while
// the process runs; (2) each backend the registry creates is a shared_ptr whose deleter
// also holds the library, so a backend stays usable after the registry that made it is
// gone. Objects a backend hands out (a Vm from launch/restore, a MemoryServer) are plain
// unique_ptrs whose code lives in the library: (1) is what makes them safe, and they must
// be destroyed before the process exits (not from a static destructor).
#pragma once

#include <boost/config.hpp>
#include <boost/dll/alias.hpp>
#include <boost/version.hpp>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "fcvm/log.h"
#include "fcvm/result.h"
#include "fcvm/visibility.h"

#define FCVM_ABI_MAJOR 1
#define FCVM_ABI_MINOR 0

#define FCVM_STRINGIFY_(x) #x
#define FCVM_STRINGIFY(x) FCVM_STRINGIFY_(x)

// Everything that must agree between host and plugin, as one string compiled into each.
#define FCVM_BUILD_FINGERPRINT                                                     \
  "compiler=" __VERSION__ ";cxx=" FCVM_STRINGIFY(__cplusplus)                      \
  ";cxx11abi=" FCVM_STRINGIFY(_GLIBCXX_USE_CXX11_ABI)                              \
  ";boost=" BOOST_LIB_VERSION                                                      \
  ";json=" FCVM_STRINGIFY(NLOHMANN_JSON_VERSION_MAJOR) "." FCVM_STRINGIFY(         \
      NLOHMANN_JSON_VERSION_MINOR) "." FCVM_STRINGIFY(NLOHMANN_JSON_VERSION_PATCH)

namespace fcvm {

enum class PluginKind : std::uint32_t { vmm = 1, network = 2, storage = 3, memory = 4 };

FCVM_SDK_API const char* to_string(PluginKind kind) noexcept;
FCVM_SDK_API std::optional<PluginKind> parse_plugin_kind(std::string_view text) noexcept;

// Whether a backend can work on this host, and if not, why and how to fix it.
struct Probe {
  bool available = false;
  std::string reason;  // one line; for an unavailable backend it names the fix

  static Probe yes(std::string note = {}) { return {true, std::move(note)}; }
  static Probe no(std::string why) { return {false, std::move(why)}; }
};

// Base of every backend interface (VmmBackend, NetworkBackend, StorageBackend,
// MemoryBackend). Objects are created by a plugin's factory and owned by the host.
class FCVM_SDK_API Backend {
 public:
  virtual ~Backend() = default;

  virtual PluginKind kind() const = 0;

  // Checks, without side effects, whether this backend can run here (tools, devices,
  // permissions, filesystems). Cheap enough to call for `fcvm plugins`. Thread-safe.
  virtual Probe probe() = 0;
};

// What the host hands a plugin's factory. The plugin may keep copies of its members.
struct PluginContext {
  LoggerPtr log;                  // already tagged with the plugin's name
  nlohmann::json config;          // the plugin's own object from the config file ({} if none)
  std::filesystem::path data_dir; // fcvm's data dir; a plugin keeps its files under
                                  // data_dir / "<its name>" unless told otherwise
};

// Creates the backend. May fail (bad config) with a Status; an exception escaping it is
// caught by the host and reported as a refusal of the plugin.
using PluginFactory = Result<std::unique_ptr<Backend>> (*)(const PluginContext& context);

struct PluginDescriptor {
  std::uint32_t abi_major;
  std::uint32_t abi_minor;
  const char* fingerprint;  // FCVM_BUILD_FINGERPRINT as the plugin was compiled
  PluginKind kind;
  const char* name;         // unique among plugins: "vmm-qemu"
  const char* version;      // the plugin's own version: "0.1.0"
  const char* description;  // one line
  PluginFactory create;
};

// The host's own fingerprint, compiled into the SDK library.
FCVM_SDK_API const char* host_fingerprint() noexcept;

}  // namespace fcvm

// The exported symbol name of the descriptor.
#define FCVM_PLUGIN_SYMBOL fcvm_plugin_descriptor_v1

// A descriptor value with the ABI version and the build fingerprint filled in. A macro on
// purpose: they expand as literals in the plugin's own translation unit, so they say how
// the plugin was compiled and nothing resolved at load time can stand in for them. Built-ins
// (compiled into the host) use it too.
#define FCVM_PLUGIN_DESCRIPTOR(kind, name, version, description, factory)                      \
  ::fcvm::PluginDescriptor {                                                                  \
    FCVM_ABI_MAJOR, FCVM_ABI_MINOR, FCVM_BUILD_FINGERPRINT, kind, name, version, description, \
        factory                                                                               \
  }

// The one way a plugin declares itself: defines its descriptor and exports it under
// FCVM_PLUGIN_SYMBOL. Once per shared object, at global scope, e.g.
//   FCVM_DECLARE_PLUGIN(fcvm::PluginKind::vmm, "vmm-qemu", "0.1.0", "QEMU microvm guests",
//                       &fcvm::qemu::create_backend)
#define FCVM_DECLARE_PLUGIN(kind, name, version, description, factory)                \
  namespace {                                                                          \
  const ::fcvm::PluginDescriptor fcvm_plugin_descriptor_ =                             \
      FCVM_PLUGIN_DESCRIPTOR(kind, name, version, description, factory);               \
  }                                                                                    \
  FCVM_PLUGIN(fcvm_plugin_descriptor_)

// Exports an already defined `descriptor` (a namespace-scope `const fcvm::PluginDescriptor`).
// Plugins use FCVM_DECLARE_PLUGIN; this is for the loader's tests, whose fixtures export
// descriptors with a wrong ABI or fingerprint on purpose.
#define FCVM_PLUGIN(descriptor) BOOST_DLL_ALIAS(descriptor, FCVM_PLUGIN_SYMBOL)

namespace fcvm {

// A factory's value from a freshly made backend: `make_backend<QemuBackend>(config, log)`.
template <typename T, typename... Args>
Result<std::unique_ptr<Backend>> make_backend(Args&&... args) {
  return std::unique_ptr<Backend>(std::make_unique<T>(std::forward<Args>(args)...));
}

}  // namespace fcvm
