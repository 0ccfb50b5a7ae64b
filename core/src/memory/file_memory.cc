#include "memory/file_memory.h"

#include <sys/stat.h>
#include <unistd.h>

#include "fcvm/memory_image.h"

namespace fcvm {
namespace {

Result<std::unique_ptr<Backend>> create_file_memory(const PluginContext& context) {
  return make_backend<FileMemory>(context.log);
}

const PluginDescriptor kDescriptor = FCVM_PLUGIN_DESCRIPTOR(
    PluginKind::memory, "file", FCVM_VERSION,
    "guest memory mapped from the snapshot's memory file, page cache shared by all clones",
    &create_file_memory);

}  // namespace

Probe FileMemory::probe() { return Probe::yes("maps the snapshot's memory file"); }

Result<MemorySource> FileMemory::source_for_clone(const SnapshotFiles& snapshot,
                                                  const std::filesystem::path&) {
  return MemorySource{MemorySourceKind::file, snapshot.memory};
}

MemoryCapabilities FileMemory::capabilities() const { return {}; }

Result<std::unique_ptr<MemoryServer>> FileMemory::serve(const MemoryServeOptions& options) {
  const auto& memory_image = options.memory_image;
  struct stat st {};
  if (::stat(memory_image.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return error(Errc::not_found, "file: memory image " + memory_image.string() +
                                        " does not exist; was the snapshot deleted?");
    }
    return errno_status("file: stat " + memory_image.string());
  }
  return std::unique_ptr<MemoryServer>();
}

Status FileMemory::place(const std::filesystem::path& memory_image,
                         const std::filesystem::path& dest) {
  auto placed = place_memory_image(memory_image, dest);
  if (!placed) return placed.status().with_context("file: ");
  if (*placed != MemoryPlacement::hardlink) {
    log_->warn(dest.string() + " is a " + to_string(*placed) + " of " + memory_image.string() +
               ", not a hardlink (another filesystem?): this fork does not share the "
               "snapshot's page cache");
  }
  return ok_status();
}

const PluginDescriptor& file_memory_descriptor() { return kDescriptor; }

}  // namespace fcvm
