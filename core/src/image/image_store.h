// ImageStore: OCI images pulled with skopeo and unpacked with umoci, kept by manifest digest.
//
// Layout under `<data_dir>/images/`:
//   <digest-hex>/rootfs/      the unpacked root filesystem
//   <digest-hex>/image.json   digest, size, pull time and the parsed ImageConfig
//   refs.json                 {"version": 1, "refs": {"<reference>": "sha256:<hex>"}}
//   .lock                     flock: exclusive for changes, shared for reads
//   .tmp-XXXXXX/              a pull or removal in progress (swept when its owner is gone)
//
// An image directory appears by one rename of a complete directory, so its presence means
// it is whole; a second pull of the same digest is a cache hit and unpacks nothing.
//
// References name their transport, as skopeo spells it: oci:DIR[:TAG], oci-archive:FILE[:TAG],
// docker-archive:FILE[:REF], dir:DIR, containers-storage:NAME, docker-daemon:NAME and
// docker://NAME[:TAG]. A reference without one ("alpine") is refused rather than guessed to
// be docker://, so nothing reaches for the network unless asked. Paths in references are made
// absolute, so "oci:img:hello" pulled from two directories are two references.
//
// Threading: an ImageStore holds no mutable state; any number of objects and processes may
// use one data dir at once (the lock file serializes changes).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "fcvm/log.h"
#include "fcvm/result.h"
#include "fcvm/storage.h"
#include "image/image_config.h"

namespace fcvm {

// The reference forms pull() accepts, for messages.
inline constexpr const char* kImageReferenceForms =
    "oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF], dir:DIR, "
    "containers-storage:NAME, docker-daemon:NAME or docker://NAME[:TAG]";

struct StoredImage {
  std::string digest;             // manifest digest, "sha256:<hex>"
  std::vector<std::string> refs;  // references that point at it, sorted; may be empty
  std::filesystem::path dir;      // <data_dir>/images/<hex>
  std::uint64_t size_bytes = 0;   // apparent size of the rootfs's files
  std::string pulled;             // when it was stored, RFC 3339 UTC
  ImageConfig config;             // config.created is the image's own creation time

  std::filesystem::path rootfs() const { return dir / "rootfs"; }
  ImageRootfs as_rootfs() const { return {digest, rootfs()}; }
};

// When pull() asks skopeo, as podman's --pull. `missing` uses a stored image without
// running skopeo; `never` fails when none is stored; `newer` asks skopeo for the source's
// digest and copies only when it differs; `always` copies every time (an unchanged digest
// is still a cache hit: nothing is unpacked).
enum class PullPolicy { always, missing, never, newer };

// "always" | "missing" | "never" | "newer"; errors name the flag and the choices.
Result<PullPolicy> parse_pull_policy(std::string_view text);

struct PullResult {
  StoredImage image;
  bool cache_hit = false;  // the digest was already stored; nothing was unpacked
};

class ImageStore {
 public:
  // `data_dir` is fcvm's data dir; the store lives in data_dir/images (created on first use).
  explicit ImageStore(std::filesystem::path data_dir, LoggerPtr log = null_logger());

  // Copies `reference` into a temp OCI layout (skopeo), and unless its manifest digest is
  // already stored, unpacks it (umoci) and moves it into place; then points the reference
  // at the digest. On failure nothing is left behind and the message names the reference
  // and the problem (for a failed copy, skopeo's own last words).
  // `policy` decides whether skopeo runs at all (see PullPolicy).
  Result<PullResult> pull(const std::string& reference,
                          PullPolicy policy = PullPolicy::always) const;

  // Finds an image by reference (as given to pull) or by digest ("sha256:<hex>", or a
  // unique prefix of the hex, with or without "sha256:").
  Result<StoredImage> resolve(const std::string& ref_or_digest) const;

  // All stored images: referenced ones sorted by first reference, then unreferenced ones
  // by digest.
  Result<std::vector<StoredImage>> list() const;

  // Given a reference: drops it, and deletes the image if no other reference points at it.
  // Given a digest or unique digest prefix: deletes the image and every reference to it.
  Status remove(const std::string& ref_or_digest) const;

  const std::filesystem::path& root() const { return root_; }

  // The canonical form a reference is stored under ("oci:rel:tag" -> "oci:/abs/rel:tag"),
  // or an invalid_argument error for a reference without a known transport.
  static Result<std::string> canonical_reference(const std::string& reference);

 private:
  std::filesystem::path root_;
  LoggerPtr log_;
};

}  // namespace fcvm
