#include "session/guest_assets.h"

#include <unistd.h>

#include "setup/initramfs_builder.h"
#include "setup/kernel_builder.h"

namespace fcvm {

std::filesystem::path agent_binary_path() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return exe.parent_path().parent_path() / "lib" / "fcvm" / "fc-agent";
}

Result<GuestAssets> find_guest_assets(const std::filesystem::path& data_dir,
                                      const std::optional<std::filesystem::path>& kernel_override,
                                      LoggerPtr log) {
  GuestAssets assets;
  if (kernel_override) {
    if (!std::filesystem::is_regular_file(*kernel_override)) {
      return error(Errc::not_found, "--kernel " + kernel_override->string() + ": no such file");
    }
    assets.kernel = std::filesystem::absolute(*kernel_override);
  } else {
    KernelBuildOptions opts;
    opts.data_dir = data_dir;
    auto kernel = KernelBuilder(opts, log).cached();
    if (!kernel) {
      return error(Errc::not_found, "no guest kernel in " + (data_dir / "kernels").string() +
                                        ": run 'fcvm setup kernel' (about 4 minutes, once) or pass --kernel FILE");
    }
    assets.kernel = kernel->vmlinux;
  }
  auto initrd = InitramfsBuilder(data_dir, log).ensure(agent_binary_path());
  if (!initrd) return initrd.status();
  assets.initrd = *initrd;
  return assets;
}

}  // namespace fcvm
