// FakeVm, for unit tests of the supervisor and its parts: a Vm whose "VMM" is the test.
// It exits when killed or shut down (its exit fd becomes readable), pauses and resumes
// at once, and cannot snapshot or connect an agent. Test-only; any thread.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>

#include "fcvm/vmm.h"

namespace fcvm {

class FakeVm final : public Vm {
 public:
  FakeVm() : exit_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  pid_t pid() const override { return ::getpid(); }
  int exit_fd() const override { return exit_.get(); }
  std::optional<ExitStatus> exited() override {
    if (!gone_) return std::nullopt;
    return ExitStatus{0, 0};
  }
  Status pause() override {
    paused_ = true;
    return ok_status();
  }
  Status resume() override {
    paused_ = false;
    return ok_status();
  }
  bool paused() const { return paused_; }
  Status snapshot(const SnapshotFiles&) override { return error(Errc::unavailable, "fake"); }
  Status shutdown(std::chrono::milliseconds) override {
    kill();
    return ok_status();
  }
  void kill() override {
    if (gone_.exchange(true)) return;
    const std::uint64_t one = 1;
    (void)!::write(exit_.get(), &one, sizeof one);
  }
  Result<UniqueFd> connect_agent(std::chrono::steady_clock::time_point) override {
    return error(Errc::unavailable, "fake");
  }

 private:
  UniqueFd exit_;
  std::atomic<bool> gone_{false};
  std::atomic<bool> paused_{false};
};

}  // namespace fcvm
