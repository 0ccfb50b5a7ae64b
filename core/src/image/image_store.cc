#include "image/image_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <string_view>
#include <system_error>
#include <utility>

#include "config/config.h"
#include "fcvm/atomic_file.h"
#include "fcvm/child_process.h"
#include "fcvm/unique_fd.h"
#include "fcvm/file_lock.h"
#include "fcvm/temp_dir.h"
#include "image/image_index.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kTempPrefix = ".tmp-";
constexpr std::string_view kLayoutTag = "img";  // tag of the image in a pull's temp layout

struct Transport {
  std::string_view prefix;
  bool takes_path;  // the part after the prefix starts with a host path
};
constexpr std::array<Transport, 7> kTransports{{
    {"oci:", true},
    {"oci-archive:", true},
    {"docker-archive:", true},
    {"dir:", true},
    {"containers-storage:", false},
    {"docker-daemon:", false},
    {"docker://", false},
}};

std::string now_rfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string format_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f s", s);
  return buf;
}

// Turns a failed tool run into its problem alone. skopeo logs through logrus
// (`time="..." level=fatal msg="..."`): keep the msg. A missing tool gets its fix.
std::string tool_problem(const Status& st, const std::string& tool, const std::string& package) {
  const std::string& m = st.message();
  if (m.find("not found in PATH") != std::string::npos) {
    return tool + " is not installed; install it with 'apt-get install " + package + "'";
  }
  auto at = m.find("msg=\"");
  if (at == std::string::npos) return m;
  std::string out;
  for (size_t i = at + 5; i < m.size(); ++i) {
    if (m[i] == '\\' && i + 1 < m.size()) {
      out += m[++i];
    } else if (m[i] == '"') {
      break;
    } else {
      out += m[i];
    }
  }
  return out;
}

// The path of a blob in an OCI layout, for a digest taken from the layout itself.
Result<fs::path> blob_path(const fs::path& layout, const json& descriptor, const char* what) {
  std::string digest = descriptor.is_object() ? descriptor.value("digest", "") : "";
  std::string hex = digest_hex(digest);
  if (hex.empty()) {
    return error(Errc::protocol, std::string(what) + " digest \"" + digest + "\" is not sha256");
  }
  return layout / "blobs" / "sha256" / hex;
}

std::uint64_t tree_size(const fs::path& dir) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code sec;
    if (it->symlink_status(sec).type() == fs::file_type::regular) {
      auto size = it->file_size(sec);
      if (!sec) total += size;
    }
  }
  return total;
}

Status sync_filesystem_of(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno_status("open " + path.string());
  if (::syncfs(fd.get()) != 0) return errno_status("syncfs " + path.string());
  return ok_status();
}

}  // namespace

ImageStore::ImageStore(std::filesystem::path data_dir, LoggerPtr log)
    : root_(std::move(data_dir) / "images"), log_(log ? std::move(log) : null_logger()) {}

Result<std::string> ImageStore::canonical_reference(const std::string& reference) {
  for (const auto& t : kTransports) {
    if (reference.compare(0, t.prefix.size(), t.prefix) != 0) continue;
    std::string rest = reference.substr(t.prefix.size());
    if (rest.empty()) {
      return error(Errc::invalid_argument, "image reference \"" + reference +
                                               "\" names nothing after " + std::string(t.prefix));
    }
    if (!t.takes_path) return reference;
    // skopeo splits the path from the tag at the first ':'.
    auto colon = rest.find(':');
    std::string path = rest.substr(0, colon);
    std::string suffix = colon == std::string::npos ? "" : rest.substr(colon);
    if (path.empty()) {
      return error(Errc::invalid_argument, "image reference \"" + reference + "\" has no path");
    }
    std::error_code ec;
    fs::path abs = fs::absolute(path, ec).lexically_normal();
    if (ec)
      return error(Errc::invalid_argument,
                   "image reference \"" + reference + "\": " + ec.message());
    std::string p = abs.string();
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    return std::string(t.prefix) + p + suffix;
  }
  return error(Errc::invalid_argument,
               "image reference \"" + reference + "\" has no transport; use " + kImageReferenceForms);
}

Result<PullPolicy> parse_pull_policy(std::string_view text) {
  if (text == "always") return PullPolicy::always;
  if (text == "missing") return PullPolicy::missing;
  if (text == "never") return PullPolicy::never;
  if (text == "newer") return PullPolicy::newer;
  return error(Errc::invalid_argument, "--pull '" + std::string(text) +
                                           "': use always, missing, never or newer");
}

Result<PullResult> ImageStore::pull(const std::string& reference, PullPolicy policy) const {
  auto canon = canonical_reference(reference);
  if (!canon) return canon.status();
  const std::string& ref = *canon;
  const std::string context = "cannot pull " + ref + ": ";
  if (policy != PullPolicy::always) {
    auto stored = resolve(ref);
    if (!stored && stored.status().code() != Errc::not_found) return stored.status();
    if (!stored && policy == PullPolicy::never) {
      return error(Errc::not_found, "image " + ref + " is not stored and --pull=never forbids "
                                    "fetching it; run 'fcvm image pull " + ref +
                                    "' or use --pull=missing");
    }
    if (stored && policy != PullPolicy::newer) return PullResult{*stored, true};
    if (stored) {
      // The source's manifest digest, without copying anything.
      auto digest = run_command({"skopeo", "inspect", "--format", "{{.Digest}}", ref});
      if (!digest) {
        return error(digest.status().code(),
                     context + tool_problem(digest.status(), "skopeo", "skopeo"));
      }
      std::string d = *digest;
      while (!d.empty() && std::isspace(static_cast<unsigned char>(d.back()))) d.pop_back();
      if (d == stored->digest) return PullResult{*stored, true};
    }
  }
  const auto started = std::chrono::steady_clock::now();
  ImageIndex images(root_);

  if (root_.string().find(':') != std::string::npos) {
    return error(Errc::invalid_argument,
                 context + "the data dir " + root_.string() +
                     " contains ':', which skopeo's oci: syntax cannot carry");
  }
  FCVM_RETURN_IF_ERROR(images.ensure_root().with_context(context));

  TempDir tmp;
  {
    // Sweep and create under the store lock, so a sweeper never sees our dir unlocked.
    auto lock = FileLock::acquire(images.lock_path(), FileLock::Mode::exclusive);
    if (!lock) return lock.status().with_context(context);
    TempDir::remove_stale(root_, kTempPrefix);
    auto created = TempDir::create(root_, kTempPrefix);
    if (!created) return created.status().with_context(context);
    tmp = std::move(*created);
  }

  const fs::path layout = tmp.path() / "layout";
  auto copied = run_command(
      {"skopeo", "copy", "--quiet", ref, "oci:" + layout.string() + ":" + std::string(kLayoutTag)});
  if (!copied) {
    std::string problem = tool_problem(copied.status(), "skopeo", "skopeo");
    // skopeo repeats the reference (sometimes expanded); our message already names it.
    const std::string echo = "initializing source ";
    if (problem.compare(0, echo.size(), echo) == 0) {
      auto end = problem.find(": ", echo.size());
      if (end != std::string::npos) problem.erase(0, end + 2);
    }
    if (problem.find("unexpected EOF") != std::string::npos ||
        problem.find("unexpected end of JSON") != std::string::npos) {
      problem += " (a file of the source image, such as its index.json or a blob, is truncated; "
                 "export or copy the image again)";
    }
    if (problem.find("policy.json") != std::string::npos) {
      problem +=
          " (skopeo needs a trust policy: /etc/containers/policy.json, from the "
          "'containers-common' package)";
    }
    Errc code = copied.status().code();
    if (problem.find("no such file") != std::string::npos ||
        problem.find("no descriptor found") != std::string::npos) {
      code = Errc::not_found;
    }
    return error(code, context + problem);
  }
  const double copy_seconds = seconds_since(started);

  // The manifest skopeo wrote: its digest names the image.
  auto index = read_json_file(layout / "index.json");
  if (!index) return index.status().with_context(context);
  const json* manifest_desc = nullptr;
  if (index->contains("manifests") && (*index)["manifests"].is_array()) {
    for (const auto& m : (*index)["manifests"]) {
      auto annotations = m.find("annotations");
      if (annotations != m.end() && annotations->is_object() &&
          annotations->value("org.opencontainers.image.ref.name", "") == kLayoutTag) {
        manifest_desc = &m;
      }
    }
  }
  if (manifest_desc == nullptr) {
    return error(Errc::protocol, context + "skopeo wrote no manifest tagged " +
                                     std::string(kLayoutTag) + " into " + layout.string());
  }
  const std::string digest = manifest_desc->value("digest", "");
  const std::string hex = digest_hex(digest);
  if (hex.empty()) {
    return error(Errc::protocol, context + "manifest digest \"" + digest + "\" is not sha256");
  }
  const fs::path final_dir = images.image_dir(hex);

  bool unpacked = false;
  double unpack_seconds = 0;
  auto unpack = [&]() -> Status {
    const auto unpack_started = std::chrono::steady_clock::now();
    // Config straight from the image's config blob, not umoci's runtime config.json, which
    // merges entrypoint and cmd.
    auto manifest_path = blob_path(layout, *manifest_desc, "manifest");
    if (!manifest_path) return manifest_path.status();
    auto manifest = read_json_file(*manifest_path);
    if (!manifest) return manifest.status();
    auto config_path = blob_path(layout, manifest->value("config", json()), "config");
    if (!config_path) return config_path.status();
    auto config_text = read_file(*config_path);
    if (!config_text) return config_text.status();
    auto config = ImageConfig::from_oci(*config_text);
    if (!config) return config.status();

    const fs::path bundle = tmp.path() / "bundle";
    std::vector<std::string> argv = {"umoci", "unpack"};
    if (::geteuid() != 0) argv.push_back("--rootless");
    argv.insert(argv.end(),
                {"--image", layout.string() + ":" + std::string(kLayoutTag), bundle.string()});
    auto unpacked_ok = run_command(argv);
    if (!unpacked_ok)
      return error(unpacked_ok.status().code(),
                   tool_problem(unpacked_ok.status(), "umoci", "umoci"));

    const fs::path staged = tmp.path() / "image";
    std::error_code ec;
    fs::create_directory(staged, ec);
    if (ec) return error(Errc::io, "create " + staged.string() + ": " + ec.message());
    fs::rename(bundle / "rootfs", staged / "rootfs", ec);
    if (ec) return error(Errc::io, "move the unpacked rootfs: " + ec.message());

    json record = {{"version", kImageRecordVersion},
                   {"digest", digest},
                   {"size_bytes", tree_size(staged / "rootfs")},
                   {"pulled", now_rfc3339()},
                   {"source", ref},
                   {"config", *config}};
    // The rootfs's data must be durable before its directory can appear under its digest.
    FCVM_RETURN_IF_ERROR(sync_filesystem_of(staged));
    FCVM_RETURN_IF_ERROR(write_file_atomic(staged / "image.json", record.dump(2) + "\n"));
    unpack_seconds = seconds_since(unpack_started);
    unpacked = true;
    return ok_status();
  };

  // Unpack outside the lock (it is the slow part); publish and update refs inside it. If
  // the image vanished between the check and the lock (a concurrent remove), unpack after all.
  for (;;) {
    if (!unpacked && !fs::is_directory(final_dir))
      FCVM_RETURN_IF_ERROR(unpack().with_context(context));
    auto lock = FileLock::acquire(images.lock_path(), FileLock::Mode::exclusive);
    if (!lock) return lock.status().with_context(context);
    const bool stored = fs::is_directory(final_dir);
    if (!stored && !unpacked) continue;
    if (!stored) {
      if (::rename((tmp.path() / "image").c_str(), final_dir.c_str()) != 0) {
        return errno_status(context + "move into " + final_dir.string());
      }
      FCVM_RETURN_IF_ERROR(fsync_dir(root_).with_context(context));
    }
    auto refs = images.read_refs();
    if (!refs) return refs.status().with_context(context);
    auto previous = refs->find(ref);
    if (previous != refs->end() && previous->second != digest) {
      log_->info("image " + ref + " moves from " + previous->second + " to " + digest);
    }
    if (previous == refs->end() || previous->second != digest) {
      (*refs)[ref] = digest;
      FCVM_RETURN_IF_ERROR(images.write_refs(*refs).with_context(context));
    }
    auto image = images.load(hex, *refs);
    if (!image) return image.status().with_context(context);
    PullResult result{std::move(*image), stored};
    lock->release();
    if (result.cache_hit) {
      log_->info("pulled " + ref + " (" + digest + ", cached) in " +
                 format_seconds(seconds_since(started)));
    } else {
      log_->info("pulled " + ref + " (" + digest + ", " +
                 std::to_string(result.image.size_bytes / 1024) + " KiB) in " +
                 format_seconds(seconds_since(started)) + ": copy " + format_seconds(copy_seconds) +
                 ", unpack " + format_seconds(unpack_seconds));
    }
    return result;
  }
}

Result<StoredImage> ImageStore::resolve(const std::string& ref_or_digest) const {
  ImageIndex images(root_);
  if (!fs::exists(root_))
    return error(Errc::not_found,
                 "no image matches \"" + ref_or_digest + "\": no images are stored");
  auto lock = FileLock::acquire(images.lock_path(), FileLock::Mode::shared);
  if (!lock) return lock.status();
  auto refs = images.read_refs();
  if (!refs) return refs.status();
  auto target = images.find(ref_or_digest, *refs);
  if (!target) return target.status();
  if (!fs::is_directory(images.image_dir(target->hex))) {
    return error(Errc::not_found, target->reference + " points at sha256:" + target->hex +
                                      ", which is no longer stored; pull it again");
  }
  return images.load(target->hex, *refs);
}

Result<std::vector<StoredImage>> ImageStore::list() const {
  ImageIndex images(root_);
  std::vector<StoredImage> out;
  if (!fs::exists(root_)) return out;
  auto lock = FileLock::acquire(images.lock_path(), FileLock::Mode::shared);
  if (!lock) return lock.status();
  auto refs = images.read_refs();
  if (!refs) return refs.status();
  for (const auto& hex : images.find_by_prefix("")) {
    auto image = images.load(hex, *refs);
    if (!image) {
      log_->warn("skipping sha256:" + hex + ": " + image.status().message());
      continue;
    }
    out.push_back(std::move(*image));
  }
  std::sort(out.begin(), out.end(), [](const StoredImage& a, const StoredImage& b) {
    if (a.refs.empty() != b.refs.empty()) return b.refs.empty();
    if (!a.refs.empty() && a.refs.front() != b.refs.front()) return a.refs.front() < b.refs.front();
    return a.digest < b.digest;
  });
  return out;
}

Status ImageStore::remove(const std::string& ref_or_digest) const {
  ImageIndex images(root_);
  if (!fs::exists(root_))
    return error(Errc::not_found,
                 "no image matches \"" + ref_or_digest + "\": no images are stored");
  TempDir trash;  // declared before the lock: emptied after the lock is released
  auto lock = FileLock::acquire(images.lock_path(), FileLock::Mode::exclusive);
  if (!lock) return lock.status();
  auto refs = images.read_refs();
  if (!refs) return refs.status();
  auto target = images.find(ref_or_digest, *refs);
  if (!target) return target.status();
  const std::string digest = "sha256:" + target->hex;

  if (!target->reference.empty()) {
    refs->erase(target->reference);
  } else {
    std::erase_if(*refs, [&](const auto& entry) { return entry.second == digest; });
  }
  const bool still_referenced = std::any_of(
      refs->begin(), refs->end(), [&](const auto& entry) { return entry.second == digest; });
  const fs::path dir = images.image_dir(target->hex);
  if (!still_referenced && fs::is_directory(dir)) {
    auto created = TempDir::create(root_, kTempPrefix);
    if (!created) return created.status();
    trash = std::move(*created);
    // One rename makes the image vanish whole; deleting its files can then take its time.
    if (::rename(dir.c_str(), (trash.path() / "image").c_str()) != 0) {
      return errno_status("move " + dir.string() + " away");
    }
  }
  if (Status written = images.write_refs(*refs); !written.ok()) {
    if (!trash.path().empty()) ::rename((trash.path() / "image").c_str(), dir.c_str());
    return written;
  }
  FCVM_RETURN_IF_ERROR(fsync_dir(root_));
  if (!target->reference.empty()) log_->info("removed reference " + target->reference);
  if (!trash.path().empty()) log_->info("removed image " + digest);
  return ok_status();
}

}  // namespace fcvm
