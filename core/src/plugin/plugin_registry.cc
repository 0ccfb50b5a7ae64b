#include "plugin/plugin_registry.h"

#include <dlfcn.h>

#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <system_error>

namespace fcvm {
namespace {

namespace fs = std::filesystem;
using Library = boost::dll::shared_library;

constexpr const char* kDescriptorSymbol = FCVM_STRINGIFY(FCVM_PLUGIN_SYMBOL);

std::string version_text(std::uint32_t major, std::uint32_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

// Every library any registry opened, by canonical path, for the life of the process. The
// map is leaked on purpose: were it destroyed at exit, libraries could be closed while
// static destructors or other threads still run their code.
class LibraryKeeper {
 public:
  // The library at `file` (canonical), opened on first request. On failure, null and
  // `why` holds the loader's reason.
  static std::shared_ptr<Library> open(const fs::path& file, std::string& why) {
    static std::mutex* mu = new std::mutex;
    static auto* kept = new std::map<fs::path, std::shared_ptr<Library>>;
    std::lock_guard lock(*mu);
    if (auto it = kept->find(file); it != kept->end()) return it->second;
    auto lib = std::make_shared<Library>();
    std::error_code ec;
    // rtld_now: an unresolved symbol is a refusal now, not a crash at first call.
    lib->load(file, ec, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    if (ec) {
      // Boost keeps only a generic error code; dlerror still holds the reason.
      const char* text = ::dlerror();
      why = text ? text : ec.message();
      // dlerror repeats the path; the caller's message names the file already.
      const std::string prefix = file.string() + ": ";
      if (why.compare(0, prefix.size(), prefix) == 0) why.erase(0, prefix.size());
      return nullptr;
    }
    kept->emplace(file, lib);
    return lib;
  }
};

// Deletes a backend with the plugin's code and keeps that code loaded meanwhile; also
// remembers which plugin made the backend, for plugin_name_of.
struct BackendDeleter {
  std::shared_ptr<Library> library;  // null for a built-in
  std::string plugin;
  std::string version;
  void operator()(Backend* b) const { delete b; }
};

std::string describe_file(const fs::path& file) {
  return file.empty() ? std::string("built-in plugin") : file.string();
}

}  // namespace

bool valid_plugin_name(std::string_view name) noexcept {
  if (name.empty()) return false;
  auto ok = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!ok(name.front())) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) { return ok(c) || c == '-'; });
}

PluginRegistry::PluginRegistry(std::vector<fs::path> search_dirs, LoggerPtr log)
    : search_dirs_(std::move(search_dirs)), log_(log ? std::move(log) : null_logger()) {}

PluginRegistry::~PluginRegistry() = default;

void PluginRegistry::add_builtin(const PluginDescriptor& d) {
  if (!scanned_) {
    builtins_.push_back(&d);
    return;
  }
  admit(d, {}, nullptr);
  rebuild_index();
}

const std::vector<PluginInfo>& PluginRegistry::plugins() {
  scan();
  return infos_;
}

const std::vector<PluginRefusal>& PluginRegistry::refusals() {
  scan();
  return refusals_;
}

const PluginInfo* PluginRegistry::find(std::string_view name) {
  scan();
  auto it = std::lower_bound(infos_.begin(), infos_.end(), name,
                             [](const PluginInfo& p, std::string_view n) { return p.name < n; });
  return it != infos_.end() && it->name == name ? &*it : nullptr;
}

void PluginRegistry::scan() {
  if (scanned_) return;
  scanned_ = true;
  for (const PluginDescriptor* d : builtins_) admit(*d, {}, nullptr);
  builtins_.clear();

  std::set<fs::path> seen;
  for (const auto& dir : search_dirs_) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      log_->debug("plugin dir " + dir.string() + " is not a directory; skipped");
      continue;
    }
    std::vector<fs::path> files;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& p = it->path();
      if (p.extension() != ".so") continue;
      std::error_code type_ec;
      if (!fs::is_regular_file(p, type_ec)) continue;  // follows symlinks
      files.push_back(p);
    }
    if (ec) {
      log_->warn("plugin dir " + dir.string() + ": cannot list it (" + ec.message() +
                 "); its plugins are skipped");
      continue;
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      std::error_code canon_ec;
      fs::path canonical = fs::canonical(file, canon_ec);
      if (canon_ec) canonical = file;
      if (!seen.insert(canonical).second) continue;
      try_file(canonical);
    }
  }
  rebuild_index();
}

void PluginRegistry::try_file(const fs::path& file) {
  std::string why;
  std::shared_ptr<Library> lib = LibraryKeeper::open(file, why);
  if (!lib) {
    refuse(file, file.string() + " is not an fcvm plugin (it cannot be loaded: " + why +
                     "); remove it from the plugin directory");
    return;
  }
  if (!lib->has(kDescriptorSymbol)) {
    refuse(file, file.string() + " is not an fcvm plugin (it exports no " + kDescriptorSymbol +
                     "); remove it from the plugin directory, or export a descriptor with "
                     "FCVM_PLUGIN");
    return;
  }
  const auto& d = lib->get_alias<const PluginDescriptor>(kDescriptorSymbol);
  admit(d, file, std::move(lib));
}

void PluginRegistry::admit(const PluginDescriptor& d, const fs::path& file,
                           std::shared_ptr<Library> library) {
  const std::string where = describe_file(file);
  // The ABI versions are the only fields read before the versions are known to agree: a
  // different major may lay out the rest of the descriptor differently.
  const std::string plugin_abi = version_text(d.abi_major, d.abi_minor);
  const std::string host_abi = version_text(FCVM_ABI_MAJOR, FCVM_ABI_MINOR);
  if (d.abi_major != FCVM_ABI_MAJOR) {
    refuse(file, where + ": plugin ABI " + plugin_abi + " does not match fcvm's ABI " +
                     host_abi + "; rebuild the plugin against this fcvm's SDK");
    return;
  }
  // Same major: the layout is known, so the name can be read to explain later lookups.
  const std::string name = d.name ? d.name : "";
  const std::string known_name = valid_plugin_name(name) ? name : std::string();
  if (d.abi_minor > FCVM_ABI_MINOR) {
    refuse(file,
           where + ": plugin needs ABI " + plugin_abi + " but fcvm provides " + host_abi +
               "; upgrade fcvm or rebuild the plugin against this fcvm's SDK",
           known_name);
    return;
  }
  const char* host_fp = host_fingerprint();
  const char* plugin_fp = d.fingerprint ? d.fingerprint : "";
  if (std::strcmp(plugin_fp, host_fp) != 0) {
    refuse(file,
           where + ": built with '" + plugin_fp + "' but fcvm with '" + host_fp +
               "'; rebuild the plugin with the same compiler, Boost and nlohmann_json as fcvm",
           known_name);
    return;
  }
  if (!valid_plugin_name(name)) {
    refuse(file, where + ": plugin name '" + name +
                     "' is invalid (it must match [a-z0-9][a-z0-9-]*); fix the name in the "
                     "plugin's descriptor");
    return;
  }
  const char* kind = to_string(d.kind);
  if (!parse_plugin_kind(kind)) {
    refuse(file,
           where + ": plugin '" + name + "' has unknown kind " +
               std::to_string(static_cast<std::uint32_t>(d.kind)) +
               " (fcvm knows vmm, network, storage, memory); rebuild the plugin against this "
               "fcvm's SDK",
           name);
    return;
  }
  if (!d.create) {
    refuse(file, where + ": plugin '" + name + "' has no factory; fix the plugin's descriptor",
           name);
    return;
  }
  for (const Entry& e : entries_) {
    if (e.info.name == name) {
      // Not recorded in refused_names_: the name is in use, by the first one.
      refuse(file, where + ": plugin name '" + name + "' is already taken by " +
                       describe_file(e.info.file) +
                       ", found earlier in the search path; remove one of the two or change "
                       "the plugin directory order");
      return;
    }
  }
  Entry entry;
  entry.info = PluginInfo{name, d.kind, d.version ? d.version : "",
                          d.description ? d.description : "", file};
  entry.descriptor = &d;
  entry.library = std::move(library);
  log_->debug("plugin " + name + " (" + kind + ") from " + where);
  entries_.push_back(std::move(entry));
}

void PluginRegistry::refuse(const fs::path& file, std::string message,
                            const std::string& plugin_name) {
  // Info, not warning: a refused file matters only to whoever picks that plugin, and then
  // create() says why; `fcvm plugins` lists every refusal.
  log_->info(message);
  if (!plugin_name.empty()) refused_names_.emplace(plugin_name, message);
  refusals_.push_back(PluginRefusal{file, std::move(message)});
}

void PluginRegistry::rebuild_index() {
  std::stable_sort(entries_.begin(), entries_.end(),
                   [](const Entry& a, const Entry& b) { return a.info.name < b.info.name; });
  infos_.clear();
  for (const Entry& e : entries_) infos_.push_back(e.info);
}

Result<std::shared_ptr<Backend>> PluginRegistry::create(std::string_view name,
                                                        const PluginContext& ctx) {
  scan();
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return e.info.name == name; });
  if (it == entries_.end()) {
    if (auto r = refused_names_.find(std::string(name)); r != refused_names_.end()) {
      return error(Errc::not_found, "plugin '" + std::string(name) + "' was refused: " + r->second);
    }
    std::string known;
    for (const Entry& e : entries_) known += (known.empty() ? "" : ", ") + e.info.name;
    return error(Errc::not_found, "no plugin named '" + std::string(name) + "' (found: " +
                                      (known.empty() ? "none" : known) +
                                      "); see 'fcvm plugins', or add its directory with "
                                      "--plugin-dir");
  }
  Entry& entry = *it;
  if (!entry.broken.empty()) return error(Errc::internal, entry.broken);

  const std::string& pname = entry.info.name;
  const std::string where = describe_file(entry.info.file);
  Result<std::unique_ptr<Backend>> made = error(Errc::internal, "factory not called");
  std::string thrown;
  try {
    made = entry.descriptor->create(ctx);
  } catch (const std::exception& e) {
    thrown = e.what();
  } catch (...) {
    thrown = "an exception that is not a std::exception";
  }
  if (!thrown.empty()) {
    entry.broken = "plugin '" + pname + "' (" + where + "): its factory threw: " + thrown +
                   "; report this to the plugin's author (fcvm will not call it again)";
    refuse(entry.info.file, entry.broken);
    return error(Errc::internal, entry.broken);
  }
  if (!made.ok()) return made.status().with_context("plugin '" + pname + "': ");
  std::unique_ptr<Backend> raw = std::move(made).value();
  if (!raw) {
    return error(Errc::internal, "plugin '" + pname + "' (" + where +
                                     "): its factory returned no backend; report this to the "
                                     "plugin's author");
  }
  std::shared_ptr<Backend> backend(raw.release(), BackendDeleter{entry.library, pname, entry.info.version});
  if (backend->kind() != entry.info.kind) {
    return error(Errc::internal, "plugin '" + pname + "' (" + where + ") declares kind " +
                                     to_string(entry.info.kind) + " but made a " +
                                     to_string(backend->kind()) +
                                     " backend; report this to the plugin's author");
  }
  return backend;
}

std::string PluginRegistry::plugin_name_of(const std::shared_ptr<const Backend>& backend) {
  const auto* deleter = std::get_deleter<BackendDeleter>(backend);
  return deleter ? deleter->plugin : std::string();
}

std::string PluginRegistry::plugin_version_of(const std::shared_ptr<const Backend>& backend) {
  const auto* deleter = std::get_deleter<BackendDeleter>(backend);
  return deleter ? deleter->version : std::string();
}

}  // namespace fcvm
