#include "engine/container_request.h"

#include <gtest/gtest.h>

namespace fcvm {
namespace {

TEST(ParseMemory, UnitsAndErrors) {
  EXPECT_EQ(*parse_memory_mib("512"), 512u);
  EXPECT_EQ(*parse_memory_mib("512m"), 512u);
  EXPECT_EQ(*parse_memory_mib("2G"), 2048u);
  for (const char* bad : {"", "0", "lots", "12k", "-5", "5000000"}) {
    auto r = parse_memory_mib(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--memory"), std::string::npos);
  }
}

TEST(CheckHostname, WhatTheAgentTakes) {
  for (const char* good : {"web1", "Web-2.example", "a"}) EXPECT_TRUE(check_hostname(good).ok()) << good;
  for (const std::string& bad : std::vector<std::string>{"", "a_b", "bad name", std::string(65, 'x')}) {
    auto st = check_hostname(bad);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.message().find("--hostname"), std::string::npos);
  }
}

TEST(ParseStopSignal, NamesNumbersAndRealTime) {
  EXPECT_EQ(*parse_stop_signal("TERM"), SIGTERM);
  EXPECT_EQ(*parse_stop_signal("SIGUSR1"), SIGUSR1);
  EXPECT_EQ(*parse_stop_signal("usr2"), SIGUSR2);
  EXPECT_EQ(*parse_stop_signal("9"), SIGKILL);
  EXPECT_EQ(*parse_stop_signal("64"), 64);
  EXPECT_EQ(*parse_stop_signal("RTMIN+3"), SIGRTMIN + 3);
  EXPECT_EQ(*parse_stop_signal("SIGRTMAX-1"), SIGRTMAX - 1);
  for (const char* bad : {"", "BOGUS", "0", "65", "-1", "RTMIN+40", "RTMAX+1", "SIG"}) {
    auto r = parse_stop_signal(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("--stop-signal"), std::string::npos) << bad;
    }
  }
}

TEST(ParsePort, Forms) {
  auto m = parse_port_mapping("8080:80");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->host_ip, "0.0.0.0");
  EXPECT_EQ(m->host_port, 8080);
  EXPECT_EQ(m->guest_port, 80);
  EXPECT_EQ(m->proto, "tcp");
  m = parse_port_mapping("127.0.0.1:53:5353/udp");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->host_ip, "127.0.0.1");
  EXPECT_EQ(m->proto, "udp");
  EXPECT_EQ(m->guest_port, 5353);
  m = parse_port_mapping("80");
  EXPECT_EQ(m->host_port, 80);
  for (const char* bad : {"", "0:80", "70000:80", "a:b", "1:2:3:4", "80/sctp"}) {
    EXPECT_FALSE(parse_port_mapping(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace fcvm
