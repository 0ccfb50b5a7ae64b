#include "health/health_check.h"

#include <gtest/gtest.h>

#include "health/http_stub.h"
#include "sdk/net_test_support.h"

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
  auto st = http_probe("http://127.0.0.1:" + std::to_string(fcvm::testing::free_tcp_port()) + "/", 5s);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("Connection refused"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace fcvm
