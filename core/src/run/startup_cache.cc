#include "run/startup_cache.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "setup/sha256.h"

namespace fcvm {
namespace {

Result<nlohmann::json> file_identity(const std::filesystem::path& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return errno_status("stat " + path.string());
  return nlohmann::json{{"path", path.string()},
                        {"size", static_cast<std::uint64_t>(st.st_size)},
                        {"mtime_ns", static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec}};
}

}  // namespace

Result<std::string> startup_cache_key(const StartupInputs& in) {
  auto kernel = file_identity(in.assets.kernel);
  if (!kernel) return kernel.status();
  auto initrd = file_identity(in.assets.initrd);
  if (!initrd) return initrd.status();
  nlohmann::json plugins = nlohmann::json::object();
  for (const auto& [kind, name] : in.plugins) plugins[to_string(kind)] = name;
  // Versioned, so that a change of what the key covers invalidates every older entry.
  const nlohmann::json canonical = {{"key_version", 1},
                                    {"image", in.image_digest},
                                    {"process", agent::to_json(in.process)},
                                    {"vcpus", in.vcpus},
                                    {"memory_mib", in.memory_mib},
                                    {"kernel", *kernel},
                                    {"initrd", *initrd},
                                    {"plugins", plugins},
                                    {"vmm_version", in.vmm_version}};
  return sha256_hex(canonical.dump());
}

std::string startup_cache_tag(const std::string& key) { return "cache-" + key.substr(0, 20); }

}  // namespace fcvm
