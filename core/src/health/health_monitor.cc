#include "health/health_monitor.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <utility>

#include "state/vm_record.h"

namespace fcvm {
namespace {

using Clock = std::chrono::steady_clock;

enum Tag : std::uint64_t { kTimer = 1, kProbeSocket };

// A probe's command output is kept up to this many raw bytes; the record keeps less.
constexpr std::size_t kMaxRawOutput = 4 * kMaxProbeOutput;

std::string seconds_text(std::chrono::milliseconds d) {
  return d.count() % 1000 == 0 ? std::to_string(d.count() / 1000) + " s" : std::to_string(d.count()) + " ms";
}

}  // namespace

HealthMonitor::HealthMonitor(HealthCheckSpec spec, agent::Process exec_defaults, OnResult on_result, LoggerPtr log)
    : spec_(std::move(spec)), exec_defaults_(std::move(exec_defaults)), on_result_(std::move(on_result)),
      log_(std::move(log)) {}

// A probe still running in the guest ends with the VM: the loop, and `exec_`, are gone.
HealthMonitor::~HealthMonitor() = default;

Result<std::unique_ptr<HealthMonitor>> HealthMonitor::create(HealthCheckSpec spec, agent::Process exec_defaults,
                                                             OnResult on_result, LoggerPtr log) {
  std::unique_ptr<HealthMonitor> m(
      new HealthMonitor(std::move(spec), std::move(exec_defaults), std::move(on_result), std::move(log)));
  m->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!m->epoll_) return errno_status("health check: epoll_create1");
  m->timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!m->timer_) return errno_status("health check: timerfd_create");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTimer;
  if (::epoll_ctl(m->epoll_.get(), EPOLL_CTL_ADD, m->timer_.get(), &ev) != 0) {
    return errno_status("health check: watch the timer");
  }
  return m;
}

void HealthMonitor::start(GuestExec& exec) {
  if (exec_) return;
  exec_ = &exec;
  tracker_.emplace(spec_, Clock::now());
  begin_probe();
}

void HealthMonitor::arm_timer(Clock::time_point when) {
  // A zero it_value disarms a timerfd: fire in 1 ns at the earliest.
  const auto delay = std::max<Clock::duration>(when - Clock::now(), std::chrono::nanoseconds(1));
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(delay).count();
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  ::timerfd_settime(timer_.get(), 0, &spec, nullptr);
}

void HealthMonitor::watch_probe_socket() {
  epoll_event ev{};
  ev.events = http_->events();
  ev.data.u64 = kProbeSocket;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, http_->fd(), &ev) != 0) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, http_->fd(), &ev);
  }
}

void HealthMonitor::begin_probe() {
  if (!exec_->container_running() || exec_->paused()) {
    HealthState state = tracker_->state();
    state.last_output = exec_->paused() ? "the VM is paused; unpause it to check its health"
                                        : "the container stopped before the check ran";
    for (auto& waiter : std::exchange(waiters_, {})) waiter(state, error(Errc::unavailable, state.last_output));
    // Paused: the next probe an interval later. Stopping: no more probes, the timer stays off.
    if (exec_->paused()) arm_timer(Clock::now() + spec_.interval);
    return;
  }
  probing_ = true;
  probe_started_ = Clock::now();
  arm_timer(probe_started_ + spec_.timeout);
  if (!spec_.url.empty()) {
    auto probe = HttpProbe::start(spec_.url);
    if (!probe) return finish(probe.status(), {});
    http_.emplace(std::move(*probe));
    watch_probe_socket();
    return;
  }
  agent::Process process = exec_defaults_;
  process.args = spec_.command;
  process.stdin = false;
  process.output_window = 0;
  output_.clear();
  error_.clear();
  auto session = exec_->start_exec(process);
  if (!session) return finish(session.status(), {});
  session_ = *session;
}

void HealthMonitor::on_ready() {
  epoll_event events[4];
  const int n = ::epoll_wait(epoll_.get(), events, 4, 0);
  for (int i = 0; i < n; ++i) {
    if (events[i].data.u64 == kTimer) {
      std::uint64_t expirations = 0;
      if (::read(timer_.get(), &expirations, sizeof expirations) != sizeof expirations) continue;
      if (!probing_) {
        begin_probe();
      } else {
        if (session_) exec_->kill_exec(*session_);
        finish(error(Errc::timeout, "timed out after " + seconds_text(spec_.timeout)), output_);
      }
    } else if (events[i].data.u64 == kProbeSocket && http_) {
      if (auto outcome = http_->advance()) {
        finish(*outcome, outcome->ok() ? "HTTP GET " + spec_.url + ": ok" : "");
      } else {
        watch_probe_socket();
      }
    }
  }
}

bool HealthMonitor::probe_now(Waiter done) {
  if (!exec_ || !exec_->container_running()) return false;
  waiters_.push_back(std::move(done));
  // Through the timer, so `done` never runs inside this call.
  if (!probing_) arm_timer(Clock::now());
  return true;
}

bool HealthMonitor::on_frame(const agent::Frame& f) {
  if (!session_ || f.session != *session_) return false;
  std::string why;
  switch (f.type) {
    case agent::FrameType::kStdout:
    case agent::FrameType::kStderr:
      output_.append(f.payload, 0, kMaxRawOutput - std::min(kMaxRawOutput, output_.size()));
      break;
    case agent::FrameType::kError:
      if (auto e = agent::parse_error_message(f.payload, &why)) error_ = e->message;
      break;
    case agent::FrameType::kExit: {
      const auto exit = agent::parse_exit(f.payload, &why);
      if (!exit) {
        finish(error(Errc::protocol, "the guest agent sent a bad EXIT: " + why), output_);
      } else if (exit->signal != 0) {
        finish(error(Errc::unavailable, "killed by signal " + std::to_string(exit->signal)), output_);
      } else if (exit->code != 0) {
        finish(error(Errc::unavailable, "exit code " + std::to_string(exit->code)), error_.empty() ? output_ : error_);
      } else {
        finish(ok_status(), output_);
      }
      break;
    }
    default: break;
  }
  return true;
}

void HealthMonitor::finish(const Status& outcome, const std::string& output) {
  if (http_) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, http_->fd(), nullptr);
    http_.reset();
  }
  session_.reset();
  probing_ = false;
  std::string shown = output;
  if (!shown.empty() && shown.back() == '\n') shown.pop_back();
  if (!outcome.ok()) shown = shown.empty() ? outcome.message() : outcome.message() + ": " + shown;
  const HealthStatus before = tracker_->status();
  tracker_->record(outcome.ok(), Clock::now(), escape_probe_output(shown));
  HealthState state = tracker_->state();
  state.checked = now_rfc3339();
  if (state.status != before) log_->info(std::string("health: ") + to_string(state.status) + " (" + state.last_output + ")");
  if (on_result_) on_result_(state);
  for (auto& waiter : std::exchange(waiters_, {})) waiter(state, outcome);
  arm_timer(probe_started_ + spec_.interval);
}

}  // namespace fcvm
