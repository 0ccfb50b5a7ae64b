#include "fcvm/probe_cache.h"

#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;

// The identity of the inputs: argv, then each key file's metadata. nullopt when a key file
// cannot be stat'ed.
std::optional<std::string> key_of(const std::vector<std::string>& argv, const std::vector<fs::path>& key_files) {
  std::string key;
  for (const auto& a : argv) key += a + '\0';
  for (const auto& f : key_files) {
    struct stat st {};
    if (::stat(f.c_str(), &st) != 0) return std::nullopt;
    key += f.string() + '\0' + std::to_string(st.st_size) + ' ' + std::to_string(st.st_mtim.tv_sec) + '.' +
           std::to_string(st.st_mtim.tv_nsec) + ' ' + std::to_string(st.st_ctim.tv_sec) + '.' +
           std::to_string(st.st_ctim.tv_nsec) + ' ' + std::to_string(st.st_ino) + ' ' +
           std::to_string(st.st_dev) + '\0';
  }
  return key;
}

// A stable file name: the program's name and a 64-bit FNV-1a of the key (the key itself is
// stored in the file and compared, so a collision only costs a re-run).
std::string file_name(const std::vector<std::string>& argv, const std::string& key) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  std::string program = fs::path(argv.empty() ? "probe" : argv.front()).filename().string();
  for (char& c : program) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  }
  return program + "-" + hex + ".json";
}

}  // namespace

Result<std::string> cached_command_output(const fs::path& cache_dir, const std::vector<std::string>& argv,
                                          const std::vector<fs::path>& key_files) {
  const auto key = key_of(argv, key_files);
  if (!key) return run_command(argv);
  const fs::path file = cache_dir / file_name(argv, *key);
  if (auto text = read_file(file); text.ok()) {
    const auto doc = nlohmann::json::parse(*text, nullptr, false);
    if (doc.is_object() && doc.contains("key") && doc["key"].is_string() && doc["key"] == *key &&
        doc.contains("output") && doc["output"].is_string()) {
      return doc["output"].get<std::string>();
    }
  }
  auto out = run_command(argv);
  if (!out) return out;
  std::error_code ec;
  if (fs::create_directories(cache_dir, ec); !ec) {
    // Keys and outputs are not secret, but nothing fcvm writes is others' to read.
    (void)write_file_atomic(file, nlohmann::json{{"key", *key}, {"output", *out}}.dump());
  }
  return out;
}

}  // namespace fcvm
