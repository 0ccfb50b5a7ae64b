#include "health/health_check.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <thread>

#include "fcvm/unique_fd.h"

namespace fcvm {
namespace {

using namespace std::chrono_literals;

TEST(HealthFlags, DurationsAsGoWritesThem) {
  EXPECT_EQ(*parse_go_duration("30s"), 30s);
  EXPECT_EQ(*parse_go_duration("1m30s"), 90s);
  EXPECT_EQ(*parse_go_duration("500ms"), 500ms);
  EXPECT_EQ(*parse_go_duration("1.5h"), 90min);
  EXPECT_EQ(*parse_go_duration("0"), 0ms);
  EXPECT_FALSE(parse_go_duration("30").ok());
  EXPECT_FALSE(parse_go_duration("3d").ok());
  EXPECT_FALSE(parse_go_duration("").ok());
}

TEST(HealthFlags, PodmanDefaultsAndErrors) {
  auto spec = parse_health_flags({.cmd = "wget -q -O- localhost"});
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->command, (std::vector<std::string>{"/bin/sh", "-c", "wget -q -O- localhost"}));
  EXPECT_EQ(spec->interval, 30s);
  EXPECT_EQ(spec->timeout, 30s);
  EXPECT_EQ(spec->start_period, 0s);
  EXPECT_EQ(spec->retries, 3u);
  EXPECT_FALSE(parse_health_flags({.interval = "disable"})->enabled());
  EXPECT_FALSE(parse_health_flags({.cmd = "none"})->enabled());

  auto bad_retries = parse_health_flags({.cmd = "true", .retries = "0"});
  EXPECT_NE(bad_retries.status().message().find("--health-retries"), std::string::npos);
  auto bad_interval = parse_health_flags({.cmd = "true", .interval = "soon"});
  EXPECT_NE(bad_interval.status().message().find("--health-interval"), std::string::npos);
  EXPECT_FALSE(parse_health_flags({.cmd = "true", .url = "http://guest:80/"}).ok());
  EXPECT_FALSE(parse_health_flags({.retries = "2"}).ok()) << "options without a check";
  EXPECT_FALSE(parse_health_flags({.url = "https://x/"}).ok());
}

TEST(HealthTracker, StartPeriodRetriesAndRecovery) {
  HealthCheckSpec spec;
  spec.command = {"true"};
  spec.start_period = 10s;
  spec.retries = 2;
  const auto t0 = std::chrono::steady_clock::time_point{};
  HealthTracker t(spec, t0);
  EXPECT_EQ(t.status(), HealthStatus::starting);
  EXPECT_EQ(t.record(false, t0 + 1s), HealthStatus::starting) << "failures in the start period do not count";
  EXPECT_EQ(t.record(false, t0 + 2s), HealthStatus::starting);
  EXPECT_EQ(t.failing_streak(), 0u);
  EXPECT_EQ(t.record(false, t0 + 11s), HealthStatus::starting);
  EXPECT_EQ(t.record(false, t0 + 12s, "boom"), HealthStatus::unhealthy);
  EXPECT_EQ(t.last_output(), "boom");
  EXPECT_EQ(t.record(true, t0 + 13s), HealthStatus::healthy);
  EXPECT_EQ(t.record(false, t0 + 14s), HealthStatus::healthy);
  EXPECT_EQ(t.record(false, t0 + 15s), HealthStatus::unhealthy);
  EXPECT_STREQ(to_string(HealthStatus::unhealthy), "unhealthy");
}

TEST(HealthTracker, ASuccessInTheStartPeriodEndsIt) {
  HealthCheckSpec spec;
  spec.command = {"true"};
  spec.start_period = 60s;
  spec.retries = 1;
  const auto t0 = std::chrono::steady_clock::time_point{};
  HealthTracker t(spec, t0);
  EXPECT_EQ(t.record(true, t0 + 1s), HealthStatus::healthy);
  EXPECT_EQ(t.record(false, t0 + 2s), HealthStatus::unhealthy);
}

TEST(HealthOutput, GuestBytesAreEscapedAndCut) {
  EXPECT_EQ(escape_probe_output("ok\tdone\n"), "ok\\tdone\\n");
  EXPECT_EQ(escape_probe_output(std::string("\x1b[31m\xff\0\\", 8)), "\\x1b[31m\\xff\\x00\\\\");
  const std::string cut = escape_probe_output(std::string(2000, 'a'));
  EXPECT_EQ(cut.size(), kMaxProbeOutput);
  EXPECT_EQ(cut.substr(cut.size() - 3), "...");
  EXPECT_EQ(escape_probe_output(std::string(kMaxProbeOutput, 'b')), std::string(kMaxProbeOutput, 'b'));
  // A multi-byte escape that would cross the limit is cut too.
  EXPECT_EQ(escape_probe_output(std::string(kMaxProbeOutput - 1, 'c') + "\x01").size(), kMaxProbeOutput);
}

TEST(HealthUrl, GuestPortsResolveThroughPublishedPorts) {
  std::vector<PortMapping> ports = {{"tcp", "0.0.0.0", 8080, 80}, {"tcp", "127.100.0.3", 9090, 90}};
  EXPECT_EQ(*resolve_health_url("http://guest:80/healthz", ports), "http://127.0.0.1:8080/healthz");
  EXPECT_EQ(*resolve_health_url("http://guest:90", ports), "http://127.100.0.3:9090/");
  EXPECT_EQ(*resolve_health_url("http://127.0.0.1:1234/x", ports), "http://127.0.0.1:1234/x");
  auto missing = resolve_health_url("http://guest:81/", ports);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("add -p HOST_PORT:81"), std::string::npos);
}

// A server on 127.0.0.1 that answers each connection with `reply` (or nothing, holding it).
class HttpStub {
 public:
  explicit HttpStub(std::string reply) : reply_(std::move(reply)) {
    listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    ::listen(listener_.get(), 4);
    socklen_t len = sizeof sa;
    ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        UniqueFd c(::accept(listener_.get(), nullptr, nullptr));
        if (!c) return;
        char buf[1024];
        if (::recv(c.get(), buf, sizeof buf, 0) <= 0) continue;
        if (reply_.empty()) {
          held_ = std::move(c);  // never answer
          continue;
        }
        (void)::send(c.get(), reply_.data(), reply_.size(), MSG_NOSIGNAL);
      }
    });
  }
  ~HttpStub() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    thread_.join();
  }
  std::string url(const std::string& path = "/") const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

 private:
  std::string reply_;
  UniqueFd listener_, held_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

TEST(HttpProbe, StatusDecidesAndFailuresSayWhy) {
  HttpStub ok("HTTP/1.0 200 OK\r\n\r\nfine");
  EXPECT_TRUE(http_probe(ok.url("/healthz"), 5s).ok());
  HttpStub redirect("HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n");
  EXPECT_TRUE(http_probe(redirect.url(), 5s).ok());
  HttpStub broken("HTTP/1.0 503 Service Unavailable\r\n\r\n");
  auto st = http_probe(broken.url(), 5s);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "HTTP status 503");
  HttpStub silent("");
  EXPECT_EQ(http_probe(silent.url(), 200ms).code(), Errc::timeout);
  HttpStub garbage("SSH-2.0-OpenSSH\r\n");
  EXPECT_EQ(http_probe(garbage.url(), 5s).code(), Errc::protocol);
}

TEST(HttpProbe, ARefusedConnectionFails) {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  const auto port = ntohs(sa.sin_port);  // bound, not listening: refused
  auto st = http_probe("http://127.0.0.1:" + std::to_string(port) + "/", 5s);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("Connection refused"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace fcvm
