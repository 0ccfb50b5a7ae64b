#include "fcvm/agent_plan.h"

#include <gtest/gtest.h>

#include <string>

namespace fcvm::agent {
namespace {

const char* kOverlayPlan = R"({
  "protocol": 2, "hostname": "web1",
  "root": {"mode": "overlay",
           "lower": {"drive": "root", "index": 0, "fstype": "squashfs"},
           "upper": {"drive": "scratch", "index": 1, "fstype": "ext4"}},
  "process": {"args": ["/bin/sh", "-c", "echo hi"], "env": ["PATH=/bin", "K=V"],
              "cwd": "/srv", "uid": 1000, "gid": 100, "additional_gids": [10, 20]},
  "network": {"mac": "02:FC:00:00:00:02", "address": "10.0.0.2/24", "gateway": "10.0.0.1",
              "dns": ["10.0.0.1", "fd00::1"], "mtu": 1500},
  "shutdown_on_exit": false})";

// Parses `json` expecting failure; returns the error.
std::string plan_error(const std::string& json) {
  std::string err;
  auto plan = parse_plan(json, &err);
  EXPECT_FALSE(plan) << "parsed: " << json;
  return err;
}

// A minimal valid plan with `process` / `root` swapped in.
std::string plan_with(const std::string& root, const std::string& process) {
  return R"({"protocol":2,"root":)" + root + R"(,"process":)" + process + "}";
}

const std::string kInitramfs = R"({"mode":"initramfs"})";
const std::string kTrue = R"({"args":["/bin/true"]})";

TEST(PlanParser, ParsesAFullOverlayPlan) {
  std::string err;
  auto plan = parse_plan(kOverlayPlan, &err);
  ASSERT_TRUE(plan) << err;
  EXPECT_EQ(plan->hostname, "web1");
  EXPECT_EQ(plan->root.mode, RootMode::kOverlay);
  EXPECT_EQ(plan->root.lower, (DriveRef{"root", 0, "squashfs"}));
  EXPECT_EQ(plan->root.upper, (DriveRef{"scratch", 1, "ext4"}));
  EXPECT_EQ(plan->process.args, (std::vector<std::string>{"/bin/sh", "-c", "echo hi"}));
  EXPECT_EQ(plan->process.cwd, "/srv");
  EXPECT_EQ(plan->process.uid, 1000u);
  EXPECT_EQ(plan->process.gid, 100u);
  EXPECT_EQ(plan->process.additional_gids, (std::vector<std::uint32_t>{10, 20}));
  EXPECT_FALSE(plan->process.stdin);
  ASSERT_TRUE(plan->network);
  EXPECT_EQ(plan->network->mac, "02:fc:00:00:00:02");
  EXPECT_EQ(plan->network->address, "10.0.0.2");
  EXPECT_EQ(plan->network->prefix_length, 24);
  EXPECT_EQ(plan->network->gateway, "10.0.0.1");
  EXPECT_EQ(plan->network->mtu, 1500u);
  EXPECT_FALSE(plan->shutdown_on_exit);
}

TEST(PlanParser, AppliesDefaults) {
  std::string err;
  auto plan = parse_plan(plan_with(kInitramfs, kTrue), &err);
  ASSERT_TRUE(plan) << err;
  EXPECT_EQ(plan->hostname, "fcvm");
  EXPECT_EQ(plan->root.mode, RootMode::kInitramfs);
  EXPECT_EQ(plan->process.cwd, "/");
  EXPECT_EQ(plan->process.uid, 0u);
  EXPECT_TRUE(plan->process.env.empty());
  EXPECT_FALSE(plan->network);
  EXPECT_TRUE(plan->shutdown_on_exit);
}

TEST(PlanParser, ParsesDirectRootAndNullNetwork) {
  std::string err;
  auto plan = parse_plan(R"({"protocol":2,"root":{"mode":"direct","drive":"root","index":2,
      "fstype":"ext4"},"process":{"args":["sh"],"stdin":true},"network":null})", &err);
  ASSERT_TRUE(plan) << err;
  EXPECT_EQ(plan->root.mode, RootMode::kDirect);
  EXPECT_EQ(plan->root.drive, (DriveRef{"root", 2, "ext4"}));
  EXPECT_TRUE(plan->process.stdin);
  EXPECT_FALSE(plan->network);
}

TEST(PlanParser, RoundTripsThroughToJson) {
  std::string err;
  auto plan = parse_plan(kOverlayPlan, &err);
  ASSERT_TRUE(plan) << err;
  auto again = parse_plan(to_json(*plan).dump(), &err);
  ASSERT_TRUE(again) << err;
  EXPECT_EQ(*plan, *again);

  Plan direct;
  direct.root.mode = RootMode::kDirect;
  direct.root.drive = {"root", 0, "squashfs"};
  direct.process.args = {"/bin/true"};
  direct.network = Network{"02:00:00:00:00:01", "192.168.1.5", 16, "", {}, 0};
  auto direct_again = parse_plan(to_json(direct).dump(), &err);
  ASSERT_TRUE(direct_again) << err;
  EXPECT_EQ(direct, *direct_again);
  // "hold" is written only when set, so plans without it read as before.
  EXPECT_FALSE(to_json(direct).contains("hold"));
  direct.hold = true;
  auto held = parse_plan(to_json(direct).dump(), &err);
  ASSERT_TRUE(held) << err;
  EXPECT_TRUE(held->hold);
  // "read_only" likewise.
  EXPECT_FALSE(to_json(direct)["root"].contains("read_only"));
  direct.root.read_only = true;
  auto read_only = parse_plan(to_json(direct).dump(), &err);
  ASSERT_TRUE(read_only) << err;
  EXPECT_TRUE(read_only->root.read_only);
  EXPECT_FALSE(parse_plan(R"({"protocol":2,"root":{"mode":"initramfs","read_only":1},"process":{"args":["sh"]}})", &err));
  EXPECT_NE(err.find("plan.root.read_only"), std::string::npos) << err;
  // "init" likewise, in the process.
  EXPECT_FALSE(to_json(direct)["process"].contains("init"));
  direct.process.init = true;
  auto with_init = parse_plan(to_json(direct).dump(), &err);
  ASSERT_TRUE(with_init) << err;
  EXPECT_TRUE(with_init->process.init);
}

TEST(PlanParser, NamesTheFieldOfAWrongType) {
  EXPECT_EQ(plan_error(plan_with(kInitramfs, R"({"args":["/bin/sh", 3]})")),
            "plan.process.args[1]: expected a string, got integer");
  EXPECT_EQ(plan_error(plan_with(kInitramfs, R"({"args":"/bin/sh"})")),
            "plan.process.args: expected an array, got string");
  EXPECT_EQ(plan_error(plan_with(kInitramfs, R"({"args":["a"],"uid":"0"})")),
            "plan.process.uid: expected an integer, got string");
  EXPECT_EQ(plan_error(plan_with(kInitramfs, R"({"args":["a"],"uid":-1})")),
            "plan.process.uid: must be between 0 and 4294967294");
  EXPECT_EQ(plan_error(plan_with(kInitramfs, R"({"args":["a"],"stdin":1})")),
            "plan.process.stdin: expected a boolean, got integer");
  EXPECT_EQ(plan_error(plan_with(R"("initramfs")", kTrue)),
            "plan.root: expected an object, got string");
}

TEST(PlanParser, RejectsMissingArgs) {
  EXPECT_EQ(plan_error(plan_with(kInitramfs, "{}")), "plan.process.args: missing");
  EXPECT_EQ(plan_error(plan_with(kInitramfs, R"({"args":[]})")),
            "plan.process.args: must name at least the program");
  EXPECT_EQ(plan_error(plan_with(kInitramfs, R"({"args":[""]})")),
            "plan.process.args[0]: program name is empty");
  EXPECT_EQ(plan_error(R"({"protocol":2,"root":{"mode":"initramfs"}})"), "plan.process: missing");
}

TEST(PlanParser, RejectsUnknownModeAndFields) {
  EXPECT_EQ(plan_error(plan_with(R"({"mode":"pivot"})", kTrue)),
            "plan.root.mode: unknown mode 'pivot' (expected overlay, direct or initramfs)");
  EXPECT_EQ(plan_error(plan_with(R"({"mode":"initramfs","drive":"x"})", kTrue)),
            "plan.root.drive: unknown field");
  EXPECT_EQ(plan_error(plan_with(kInitramfs, R"({"args":["a"],"terminal":true})")),
            "plan.process.terminal: unknown field");
  EXPECT_EQ(plan_error(R"({"protocol":2,"root":{"mode":"initramfs"},"process":{"args":["a"]},"hostnme":"x"})"),
            "plan.hostnme: unknown field");
}

TEST(PlanParser, ChecksProtocolVersion) {
  EXPECT_EQ(plan_error(R"({"root":{"mode":"initramfs"},"process":{"args":["a"]}})"),
            "plan.protocol: missing");
  EXPECT_EQ(plan_error(R"({"protocol":1,"root":{"mode":"initramfs"},"process":{"args":["a"]}})"),
            "plan.protocol: version 1 is not supported; this agent speaks version 2");
}

TEST(PlanParser, ValidatesDrives) {
  EXPECT_EQ(plan_error(plan_with(R"({"mode":"direct","drive":"root","index":0})", kTrue)),
            "plan.root.fstype: missing");
  EXPECT_EQ(plan_error(plan_with(R"({"mode":"direct","drive":"a drive","index":0,"fstype":"ext4"})", kTrue)),
            "plan.root.drive: must be 1-20 characters of [A-Za-z0-9_.-] (a virtio-blk serial)");
  EXPECT_EQ(plan_error(plan_with(R"({"mode":"direct","drive":"r","index":702,"fstype":"ext4"})", kTrue)),
            "plan.root.index: must be between 0 and 701");
  EXPECT_EQ(plan_error(plan_with(R"({"mode":"overlay","lower":{"drive":"r","index":0,"fstype":"squashfs"},
      "upper":{"drive":"s","index":1,"fstype":"squashfs"}})", kTrue)),
            "plan.root.upper.fstype: squashfs is read-only; the upper layer needs a writable "
            "filesystem such as ext4");
  EXPECT_EQ(plan_error(plan_with(R"({"mode":"overlay","lower":{"drive":"r","index":0,"fstype":"squashfs"}})", kTrue)),
            "plan.root.upper: missing");
}

TEST(PlanParser, ValidatesProcessDetails) {
  EXPECT_EQ(plan_error(plan_with(kInitramfs, R"({"args":["a"],"env":["NOVALUE"]})")),
            "plan.process.env[0]: expected KEY=VALUE");
  EXPECT_EQ(plan_error(plan_with(kInitramfs, R"({"args":["a"],"cwd":"relative"})")),
            "plan.process.cwd: must be an absolute path");
  EXPECT_EQ(plan_error(plan_with(kInitramfs, R"({"args":["a\u0000b"]})")),
            "plan.process.args[0]: contains a NUL character");
}

TEST(PlanParser, ValidatesNetwork) {
  auto with_net = [](const std::string& net) {
    return R"({"protocol":2,"root":{"mode":"initramfs"},"process":{"args":["a"]},"network":)" +
           net + "}";
  };
  EXPECT_EQ(plan_error(with_net(R"({"mac":"02:00:00:00:00","address":"10.0.0.2/24"})")),
            "plan.network.mac: expected a MAC address like 02:fc:00:00:00:02");
  EXPECT_EQ(plan_error(with_net(R"({"mac":"02:00:00:00:00:01","address":"10.0.0.2"})")),
            "plan.network.address: expected an IPv4 address with prefix length, like 10.0.0.2/24");
  EXPECT_EQ(plan_error(with_net(R"({"mac":"02:00:00:00:00:01","address":"10.0.0.2/33"})")),
            "plan.network.address: expected an IPv4 address with prefix length, like 10.0.0.2/24");
  EXPECT_EQ(plan_error(with_net(R"({"mac":"02:00:00:00:00:01","address":"10.0.0.2/2x"})")),
            "plan.network.address: expected an IPv4 address with prefix length, like 10.0.0.2/24");
  EXPECT_EQ(plan_error(with_net(R"({"mac":"02:00:00:00:00:01","address":"10.0.0.2/24","gateway":"x"})")),
            "plan.network.gateway: expected an IPv4 address");
  EXPECT_EQ(plan_error(with_net(R"({"mac":"02:00:00:00:00:01","address":"10.0.0.2/24","mtu":20})")),
            "plan.network.mtu: must be between 68 and 65535");
  EXPECT_EQ(plan_error(with_net(R"({"mac":"02:00:00:00:00:01","address":"10.0.0.2/24","dns":["nope"]})")),
            "plan.network.dns[0]: expected an IP address");
}

TEST(PlanParser, RejectsNonJsonAndNonObjects) {
  EXPECT_EQ(plan_error("{not json"), "plan: not valid JSON");
  EXPECT_EQ(plan_error("[1,2]"), "plan: expected an object, got array");
  EXPECT_EQ(plan_error(R"({"protocol":1.5})"), "plan.protocol: expected an integer, got number");
}

TEST(ProcessParser, ParsesExecPayload) {
  std::string err;
  auto p = parse_process(R"({"args":["ls","-l"],"env":["A=1"],"stdin":true})", &err);
  ASSERT_TRUE(p) << err;
  EXPECT_EQ(p->args.size(), 2u);
  EXPECT_TRUE(p->stdin);
  EXPECT_FALSE(parse_process(R"({"args":[]})", &err));
  EXPECT_EQ(err, "process.args: must name at least the program");
  auto round = parse_process(to_json(*p).dump(), &err);
  ASSERT_TRUE(round) << err;
  EXPECT_EQ(*round, *p);
}

// "tty" is optional, omitted when unset (agents without it accept such processes), and
// checked when present.
TEST(ProcessParser, TtyIsOptionalAndChecked) {
  std::string err;
  Process plain;
  plain.args = {"sh"};
  EXPECT_FALSE(to_json(plain).contains("tty"));
  auto p = parse_process(R"({"args":["sh"],"tty":{"rows":40,"cols":120}})", &err);
  ASSERT_TRUE(p) << err;
  ASSERT_TRUE(p->tty);
  EXPECT_EQ(*p->tty, (WindowSize{40, 120}));
  auto round = parse_process(to_json(*p).dump(), &err);
  ASSERT_TRUE(round) << err;
  EXPECT_EQ(*round, *p);
  EXPECT_FALSE(parse_process(R"({"args":["sh"],"tty":{"rows":70000,"cols":1}})", &err));
  EXPECT_EQ(err, "process.tty.rows: must be between 0 and 65535");
  EXPECT_FALSE(parse_process(R"({"args":["sh"],"tty":{"rows":1,"cols":1,"x":1}})", &err));
  EXPECT_EQ(err, "process.tty.x: unknown field");
}

}  // namespace
}  // namespace fcvm::agent
