// Forwarding wrappers for the backend interfaces (after LevelDB's EnvWrapper): each holds a
// real backend and forwards every call to it, so a subclass can override one method (to make
// one call of a real plugin fail, count calls, or add a delay) and keep the rest real.
//
// Ownership: a wrapper shares ownership of its target (a plugin's backend keeps its library
// loaded through its deleter, so the wrapper does too). Threading and errors: those of the
// target; the wrappers add nothing and never throw.
#pragma once

#include <memory>
#include <utility>

#include "fcvm/memory.h"
#include "fcvm/network.h"
#include "fcvm/storage.h"
#include "fcvm/vmm.h"

namespace fcvm {

class VmmBackendWrapper : public VmmBackend {
 public:
  explicit VmmBackendWrapper(std::shared_ptr<VmmBackend> target) : target_(std::move(target)) {}

  VmmBackend& target() const { return *target_; }

  Probe probe() override { return target_->probe(); }
  VmmCapabilities capabilities() const override { return target_->capabilities(); }
  Result<std::unique_ptr<Vm>> launch(const VmSpec& spec) override { return target_->launch(spec); }
  Result<std::unique_ptr<Vm>> restore(const RestoreSpec& spec) override {
    return target_->restore(spec);
  }

 private:
  std::shared_ptr<VmmBackend> target_;
};

class StorageBackendWrapper : public StorageBackend {
 public:
  explicit StorageBackendWrapper(std::shared_ptr<StorageBackend> target)
      : target_(std::move(target)) {}

  StorageBackend& target() const { return *target_; }

  Probe probe() override { return target_->probe(); }
  Result<BaseImage> prepare_base(const ImageRootfs& image) override {
    return target_->prepare_base(image);
  }
  Result<DiskLease> create_disks(const BaseImage& base, const std::filesystem::path& vm_dir,
                                 const DiskOptions& options) override {
    return target_->create_disks(base, vm_dir, options);
  }
  Result<DiskLease> snapshot_disks(const DiskLease& vm,
                                   const std::filesystem::path& snapshot_dir) override {
    return target_->snapshot_disks(vm, snapshot_dir);
  }
  Result<DiskLease> clone_disks(const DiskLease& snapshot,
                                const std::filesystem::path& clone_dir) override {
    return target_->clone_disks(snapshot, clone_dir);
  }
  Status destroy(const DiskLease& lease) override { return target_->destroy(lease); }

 private:
  std::shared_ptr<StorageBackend> target_;
};

class NetworkBackendWrapper : public NetworkBackend {
 public:
  explicit NetworkBackendWrapper(std::shared_ptr<NetworkBackend> target)
      : target_(std::move(target)) {}

  NetworkBackend& target() const { return *target_; }

  Probe probe() override { return target_->probe(); }
  Result<NetworkLease> setup(const NetworkRequest& request) override {
    return target_->setup(request);
  }
  Status attach(NetworkLease& lease, pid_t vmm_pid) override {
    return target_->attach(lease, vmm_pid);
  }
  Result<NetworkLease> setup_clone(const NetworkLease& snapshot_lease,
                                   const NetworkRequest& request) override {
    return target_->setup_clone(snapshot_lease, request);
  }
  Status teardown(const NetworkLease& lease) override { return target_->teardown(lease); }

 private:
  std::shared_ptr<NetworkBackend> target_;
};

class MemoryBackendWrapper : public MemoryBackend {
 public:
  explicit MemoryBackendWrapper(std::shared_ptr<MemoryBackend> target) : target_(std::move(target)) {}

  MemoryBackend& target() const { return *target_; }

  Probe probe() override { return target_->probe(); }
  MemoryCapabilities capabilities() const override { return target_->capabilities(); }
  Result<MemorySource> source_for_clone(const SnapshotFiles& snapshot,
                                        const std::filesystem::path& clone_dir) override {
    return target_->source_for_clone(snapshot, clone_dir);
  }
  Result<std::unique_ptr<MemoryServer>> serve(const MemoryServeOptions& options) override {
    return target_->serve(options);
  }
  Status place(const std::filesystem::path& memory_image, const std::filesystem::path& dest) override {
    return target_->place(memory_image, dest);
  }

 private:
  std::shared_ptr<MemoryBackend> target_;
};

}  // namespace fcvm
