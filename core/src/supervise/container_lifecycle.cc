#include "supervise/container_lifecycle.h"

#include <utility>

#include "supervise/console_tail.h"

namespace fcvm {

ContainerLifecycle::ContainerLifecycle(Phase phase, Vm& vm, AgentChannel& agent, Options options,
                                       LoggerPtr log)
    : vm_(vm), agent_(agent), options_(std::move(options)), log_(std::move(log)), phase_(phase) {
  if (phase_ == Phase::booting) deadline_ = Clock::now() + options_.boot_timeout;
}

void ContainerLifecycle::booted() {
  if (phase_ != Phase::booting) return;
  phase_ = Phase::starting;
  deadline_.reset();
}

void ContainerLifecycle::started() {
  if (phase_ == Phase::starting) phase_ = Phase::running;
  if (pending_stop_ && phase_ == Phase::running) {
    const PendingStop stop = *std::exchange(pending_stop_, std::nullopt);
    send_stop(stop.grace, stop.signal);
  }
}

void ContainerLifecycle::exited(std::string_view payload) {
  std::string err;
  if (auto e = agent::parse_exit(payload, &err)) {
    exit_code_ = e->code;
    log_->debug("container exited with " + std::to_string(e->code));
  } else {
    log_->warn("agent sent a bad EXIT: " + err);
    exit_code_ = kRunFailedExit;
  }
  // The agent powers the guest off next; do not wait on it forever.
  if (phase_ != Phase::stopping) {
    phase_ = Phase::stopping;
    deadline_ = Clock::now() + options_.stop_timeout;
  }
}

void ContainerLifecycle::agent_error(const std::string& message) {
  if (phase_ == Phase::starting) start_error_ = message;
  log_->warn("agent: " + message);
}

void ContainerLifecycle::fail(Status failure) {
  if (!failure_) failure_ = std::move(failure);
}

Status ContainerLifecycle::boot_failure(Errc code, const std::string& what) const {
  return error(code, what + "; console " + options_.console_log.string() + ":" +
                         console_tail(options_.console_log, 8));
}

void ContainerLifecycle::stop(std::chrono::milliseconds grace, int signal) {
  if (signal == 0) signal = options_.stop_signal;
  // A paused guest cannot stop its container.
  if (paused_ && vm_.resume().ok()) {
    paused_ = false;
    if (options_.on_paused) options_.on_paused(false);
  }
  if (++stop_requests_ > 1) {
    // A second request: no more grace.
    vm_.kill();
    return;
  }
  if (phase_ == Phase::booting || phase_ == Phase::starting) {
    // The agent stops a container it has started: ask once it has (the boot deadline
    // still applies, and a second request kills the VM at once).
    pending_stop_ = PendingStop{grace, signal};
    return;
  }
  send_stop(grace, signal);
}

void ContainerLifecycle::send_stop(std::chrono::milliseconds grace, int signal) {
  (void)agent_.send_shutdown(grace, signal);
  // The agent SIGKILLs after `grace`; give it a little more to power off.
  phase_ = Phase::stopping;
  deadline_ = Clock::now() + grace + std::chrono::seconds(5);
}

Status ContainerLifecycle::set_paused(bool pause) {
  if (paused_ == pause) return ok_status();
  if (Status st = pause ? vm_.pause() : vm_.resume(); !st.ok()) return st;
  paused_ = pause;
  log_->info(pause ? "paused on the control socket" : "resumed on the control socket");
  if (options_.on_paused) options_.on_paused(pause);
  return ok_status();
}

void ContainerLifecycle::deadline_passed() {
  if (phase_ == Phase::booting) {
    return fail(boot_failure(Errc::timeout, "the guest agent did not answer within " +
                                                std::to_string(options_.boot_timeout.count() / 1000) + " s"));
  }
  log_->warn("the guest did not power off in time; stopping the VM");
  (void)vm_.shutdown(std::chrono::milliseconds(3000));
}

Result<int> ContainerLifecycle::outcome() {
  if (failure_) return *failure_;
  if (phase_ == Phase::booting) {
    auto st = vm_.exited();
    return boot_failure(Errc::io, "the VM exited while booting (" + (st ? st->describe() : "killed") + ")");
  }
  if (exit_code_) return *exit_code_;
  if (start_error_) return error(Errc::invalid_argument, *start_error_);
  auto vmm_exit = vm_.exited();
  return error(Errc::io, std::string("the VM stopped before the container exited (VMM ") +
                             (vmm_exit ? vmm_exit->describe() : "killed") + ")");
}

}  // namespace fcvm
