#include "memory/file_memory.h"

#include <sys/stat.h>
#include <unistd.h>

namespace fcvm {
namespace {

Result<std::unique_ptr<Backend>> create_file_memory(const PluginContext&) {
  return std::unique_ptr<Backend>(std::make_unique<FileMemory>());
}

const PluginDescriptor kDescriptor = {
    FCVM_PLUGIN_DESCRIPTOR_HEAD,
    PluginKind::memory,
    "file",
    FCVM_VERSION,
    "guest memory mapped from the snapshot's memory file, page cache shared by all clones",
    &create_file_memory,
};

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
  if (::link(memory_image.c_str(), dest.c_str()) == 0) return ok_status();
  if (errno == EEXIST) {
    return error(Errc::already_exists,
                 "file: " + dest.string() + " already exists; remove it or pick a new fork dir");
  }
  if (errno == EXDEV) {
    return error(Errc::invalid_argument, "file: " + dest.string() + " is on another filesystem than " +
                                             memory_image.string() +
                                             "; keep forks in the same data dir as their snapshot");
  }
  return errno_status("file: hardlink " + memory_image.string() + " to " + dest.string());
}

const PluginDescriptor& file_memory_descriptor() { return kDescriptor; }

}  // namespace fcvm
