// PluginRegistry: finds backend plugins, checks them, and creates their backends.
//
// Sources, in this order: built-ins registered with add_builtin, then every `*.so` file in
// each search directory (directories in the order given, files sorted by name, a file
// reached twice through symlinks or repeated directories tried once). The scan happens on
// the first lookup. A file is refused, with a one-line message naming the file, the
// problem and the fix, when it is not a plugin, speaks another ABI, was built with another
// toolchain (fingerprint), has an unknown kind or an invalid name, or reuses a name already
// taken (the first found keeps it). Refused files stay out of plugins(). A plugin whose
// factory throws is refused when that happens: it stays listed, create() fails from then on.
//
// Lifetime: plugin libraries are never unloaded. A process-wide keeper holds every library
// this or any registry opened until exit (destructors that run at exit must still find
// their code), and every backend create() returns holds its library through its deleter,
// so backends may outlive the registry.
//
// Threading: a registry is used from one thread at a time. The backends it creates follow
// their own interface's rules.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fcvm/log.h"
#include "fcvm/plugin.h"
#include "fcvm/result.h"

namespace boost::dll {
class shared_library;
}

namespace fcvm {

struct PluginInfo {
  std::string name;
  PluginKind kind;
  std::string version;
  std::string description;
  std::filesystem::path file;  // empty for a built-in
};

struct PluginRefusal {
  std::filesystem::path file;  // empty for a built-in
  std::string message;         // one line: the file, the problem and the fix
};

class PluginRegistry {
 public:
  // `search_dirs` need not exist (a missing one is skipped). `log` gets a line per refused
  // file (info) and per loaded one (debug); null means no logging.
  PluginRegistry(std::vector<std::filesystem::path> search_dirs, LoggerPtr log);
  ~PluginRegistry();
  PluginRegistry(const PluginRegistry&) = delete;
  PluginRegistry& operator=(const PluginRegistry&) = delete;

  // Registers a plugin compiled into the host (the File memory backend). It passes the same
  // checks as a file and, when added before the scan, wins a name clash with any file.
  // `d` must outlive the registry (a namespace-scope constant).
  void add_builtin(const PluginDescriptor& d);

  // Usable plugins, sorted by name. Scans on first call. The reference stays valid for the
  // registry's life; later add_builtin calls may add entries.
  const std::vector<PluginInfo>& plugins();
  // Files (and built-ins) not used, in the order they were met. Scans on first call. A
  // plugin whose factory threw is added here when that happens.
  const std::vector<PluginRefusal>& refusals();
  // The plugin called `name`, or nullptr. Scans on first call. The pointer is valid until
  // the next add_builtin.
  const PluginInfo* find(std::string_view name);

  // Calls plugin `name`'s factory with `ctx`. Errors: not_found (no such plugin; a refused
  // one is named with its refusal), the factory's own error prefixed with the plugin name,
  // internal when the factory throws (the plugin is then refused for good), returns null,
  // or makes a backend of another kind.
  Result<std::shared_ptr<Backend>> create(std::string_view name, const PluginContext& ctx);

  // create(), after checking that `name` is a plugin of `kind` (else invalid_argument:
  // "plugin 'X' is a storage plugin, not vmm"). T is the interface of `kind`.
  // The name of the plugin that made `backend` (a pointer create() returned, or any copy
  // or cast of it); empty for a pointer from anywhere else. Works after the registry is gone.
  static std::string plugin_name_of(const std::shared_ptr<const Backend>& backend);
  // That plugin's own version (its descriptor's), likewise.
  static std::string plugin_version_of(const std::shared_ptr<const Backend>& backend);

  template <class T>
  Result<std::shared_ptr<T>> create_as(std::string_view name, PluginKind kind,
                                       const PluginContext& ctx) {
    if (const PluginInfo* info = find(name); info && info->kind != kind) {
      return error(Errc::invalid_argument, "plugin '" + info->name + "' is a " +
                                               to_string(info->kind) + " plugin, not " +
                                               to_string(kind));
    }
    auto made = create(name, ctx);
    if (!made.ok()) return made.status();
    return std::static_pointer_cast<T>(std::move(made).value());
  }

 private:
  struct Entry {
    PluginInfo info;
    const PluginDescriptor* descriptor;
    std::shared_ptr<boost::dll::shared_library> library;  // null for a built-in
    std::string broken;  // set once the factory threw: the refusal message
  };

  void scan();
  void try_file(const std::filesystem::path& file);
  // Runs the descriptor checks; on success adds the entry, else records a refusal.
  void admit(const PluginDescriptor& d, const std::filesystem::path& file,
             std::shared_ptr<boost::dll::shared_library> library);
  void refuse(const std::filesystem::path& file, std::string message,
              const std::string& plugin_name = {});
  void rebuild_index();

  std::vector<std::filesystem::path> search_dirs_;
  LoggerPtr log_;
  bool scanned_ = false;
  std::vector<const PluginDescriptor*> builtins_;  // added before the scan
  std::vector<Entry> entries_;                     // sorted by name
  std::vector<PluginInfo> infos_;                  // mirrors entries_
  std::vector<PluginRefusal> refusals_;
  // Names of refused plugins (when the descriptor could be read) -> refusal message, so
  // create() can say why a known name is missing.
  std::unordered_map<std::string, std::string> refused_names_;
};

// True for a valid plugin name: [a-z0-9][a-z0-9-]*.
bool valid_plugin_name(std::string_view name) noexcept;

}  // namespace fcvm
