#include "loop_filesystem.h"

#include <fcntl.h>
#include <unistd.h>

#include "fcvm/child_process.h"
#include "fcvm/unique_fd.h"

namespace fcvm::testing {
namespace {

std::string mkfs_tool(const std::string& fstype) {
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/"}) {
    std::string path = std::string(dir) + "mkfs." + fstype;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return {};
}

}  // namespace

std::string LoopFilesystem::missing_prerequisite(const std::string& fstype) {
  if (::geteuid() != 0) return "needs root to attach loop devices and mount " + fstype;
  if (::access("/dev/loop-control", R_OK | W_OK) != 0) return "no /dev/loop-control here";
  if (mkfs_tool(fstype).empty()) return "mkfs." + fstype + " is not installed";
  return {};
}

Result<LoopFilesystem> LoopFilesystem::create(const std::string& fstype, std::uint64_t size_mib) {
  LoopFilesystem fs;
  auto dir = TempDir::create(std::filesystem::temp_directory_path(), "fcvm-loopfs-" + fstype + "-");
  if (!dir) return dir.status();
  fs.dir_ = std::move(*dir);
  fs.image_ = fs.dir_.path() / ("fs." + fstype);
  {
    UniqueFd fd(::open(fs.image_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(size_mib << 20)) != 0)
      return errno_status("create " + fs.image_.string());
  }
  std::vector<std::string> mkfs = {mkfs_tool(fstype), "-q"};
  if (fstype == "ext4") mkfs.push_back("-F");
  mkfs.push_back(fs.image_.string());
  if (auto made = run_command(mkfs); !made) return made.status();
  auto loop = LoopDevice::attach(fs.image_);
  if (!loop) return loop.status();
  fs.loop_ = std::move(*loop);
  const auto target = fs.dir_.path() / "mnt";
  std::filesystem::create_directory(target);
  auto mount = Mount::create(fs.loop_.device(), target, fstype);
  if (!mount) return mount.status();
  fs.mount_ = std::move(*mount);
  return fs;
}

}  // namespace fcvm::testing
