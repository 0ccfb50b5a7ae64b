#include "qemu_command_line.h"

#include <gtest/gtest.h>

#include <fcvm/agent_protocol.h>

#include <algorithm>

namespace fcvm::qemu {
namespace {

using Argv = std::vector<std::string>;

VmSpec base_spec() {
  VmSpec s;
  s.name = "web1";
  s.dir = "/var/lib/fcvm/vms/web1";
  s.vcpus = 2;
  s.memory_mib = 512;
  s.kernel = "/k/vmlinux";
  s.initrd = "/k/initrd.gz";
  s.cmdline = "console=ttyS0 quiet";
  s.console_log = "/var/lib/fcvm/vms/web1/console.log";
  s.agent_socket = "/var/lib/fcvm/vms/web1/agent.sock";
  return s;
}

// The value following the first occurrence of `flag`, or "" when absent.
std::string value_of(const Argv& argv, const std::string& flag) {
  auto it = std::find(argv.begin(), argv.end(), flag);
  return it == argv.end() || it + 1 == argv.end() ? "" : *(it + 1);
}

// Every value following `flag`, in order.
Argv values_of(const Argv& argv, const std::string& flag) {
  Argv out;
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag) out.push_back(argv[i + 1]);
  }
  return out;
}

bool has(const Argv& argv, const std::string& item) {
  return std::find(argv.begin(), argv.end(), item) != argv.end();
}

QemuHostOptions host(Accel accel = Accel::tcg, unsigned tsc_khz = 0) {
  QemuHostOptions h;
  h.binary = "qemu-system-x86_64";
  h.accel = accel;
  h.tsc_khz = tsc_khz;
  return h;
}

Argv launch(const VmSpec& s, Accel accel = Accel::tcg) {
  auto argv = QemuCommandLine::for_launch(s, host(accel));
  EXPECT_TRUE(argv.ok()) << argv.status().message();
  return argv.ok() ? *argv : Argv{};
}

TEST(QemuCommandLine, BootBasics) {
  const Argv a = launch(base_spec());
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a[0], "qemu-system-x86_64");
  EXPECT_EQ(value_of(a, "-machine"), "microvm,memory-backend=mem");
  EXPECT_EQ(value_of(a, "-accel"), "tcg");
  EXPECT_EQ(value_of(a, "-smp"), "2");
  EXPECT_EQ(value_of(a, "-m"), "512M");
  EXPECT_EQ(value_of(a, "-object"),
            "memory-backend-file,id=mem,size=512M,mem-path=/var/lib/fcvm/vms/web1/mem,share=on");
  EXPECT_EQ(value_of(a, "-kernel"), "/k/vmlinux");
  EXPECT_EQ(value_of(a, "-initrd"), "/k/initrd.gz");
  EXPECT_EQ(value_of(a, "-name"), "guest=web1");
  for (const char* flag : {"-nodefaults", "-no-user-config", "-nographic", "-no-reboot"}) {
    EXPECT_TRUE(has(a, flag)) << flag;
  }
  EXPECT_FALSE(has(a, "-incoming"));
  EXPECT_FALSE(has(a, "-S"));
  EXPECT_FALSE(has(a, "-cpu")) << "TCG keeps the default CPU model";
}

TEST(QemuCommandLine, QmpOnUnixSocketInVmDir) {
  const Argv a = launch(base_spec());
  const Argv chardevs = values_of(a, "-chardev");
  EXPECT_TRUE(has(chardevs, "socket,id=qmp,path=/var/lib/fcvm/vms/web1/qmp.sock,server=on,wait=off"));
  EXPECT_EQ(value_of(a, "-mon"), "chardev=qmp,mode=control");
  EXPECT_EQ(QemuCommandLine::qmp_socket("/d"), "/d/qmp.sock");
  EXPECT_EQ(QemuCommandLine::memory_file("/d"), "/d/mem");
  EXPECT_EQ(QemuCommandLine::log_file("/d"), "/d/qemu.log");
}

TEST(QemuCommandLine, ConsoleAppendsToFile) {
  const Argv a = launch(base_spec());
  EXPECT_TRUE(has(values_of(a, "-chardev"),
                  "file,id=console,path=/var/lib/fcvm/vms/web1/console.log,append=on"));
  EXPECT_EQ(value_of(a, "-serial"), "chardev:console");
}

TEST(QemuCommandLine, NoConsoleNoSerial) {
  VmSpec s = base_spec();
  s.console_log.clear();
  const Argv a = launch(s);
  EXPECT_FALSE(has(a, "-serial"));
}

TEST(QemuCommandLine, KvmGetsHostCpuWithoutArchCapabilities) {
  const Argv a = launch(base_spec(), Accel::kvm);
  EXPECT_EQ(value_of(a, "-accel"), "kvm");
  EXPECT_EQ(value_of(a, "-cpu"), "host,-arch-capabilities");
}

TEST(QemuCommandLine, NoInitrd) {
  VmSpec s = base_spec();
  s.initrd.clear();
  EXPECT_FALSE(has(launch(s), "-initrd"));
}

TEST(QemuCommandLine, RebootEndsQemu) {
  EXPECT_EQ(value_of(launch(base_spec()), "-append"), "console=ttyS0 quiet reboot=t");
  EXPECT_EQ(QemuCommandLine::kernel_cmdline("", host()), "reboot=t");
  EXPECT_EQ(QemuCommandLine::kernel_cmdline("reboot=k console=ttyS0", host()), "reboot=k console=ttyS0");
  EXPECT_EQ(QemuCommandLine::kernel_cmdline("noreboot=1", host()), "noreboot=1 reboot=t");
}

TEST(QemuCommandLine, TcgGuestIsToldTheTscFrequency) {
  EXPECT_EQ(QemuCommandLine::kernel_cmdline("console=ttyS0", host(Accel::tcg, 2596120)),
            "console=ttyS0 reboot=t tsc_early_khz=2596120 tsc=reliable");
  EXPECT_EQ(QemuCommandLine::kernel_cmdline("console=ttyS0", host(Accel::kvm, 2596120)),
            "console=ttyS0 reboot=t") << "KVM guests have kvmclock";
  EXPECT_EQ(QemuCommandLine::kernel_cmdline("console=ttyS0", host(Accel::tcg, 0)), "console=ttyS0 reboot=t");
  EXPECT_EQ(QemuCommandLine::kernel_cmdline("tsc=unstable", host(Accel::tcg, 2596120)), "tsc=unstable reboot=t")
      << "the user's own tsc= wins";
  EXPECT_EQ(QemuCommandLine::kernel_cmdline("tsc_early_khz=1000", host(Accel::tcg, 2596120)),
            "tsc_early_khz=1000 reboot=t");
  auto argv = QemuCommandLine::for_launch(base_spec(), host(Accel::tcg, 1000000));
  ASSERT_TRUE(argv.ok());
  EXPECT_EQ(value_of(*argv, "-append"), "console=ttyS0 quiet reboot=t tsc_early_khz=1000000 tsc=reliable");
}

TEST(QemuCommandLine, DrivesInOrderWithSerials) {
  VmSpec s = base_spec();
  s.drives = {{"rootfs", "/img/root.sqfs", true}, {"scratch", "/img/scratch.ext4", false}};
  const Argv a = launch(s);
  EXPECT_EQ(values_of(a, "-drive"),
            (Argv{"id=rootfs,file=/img/root.sqfs,format=raw,if=none,readonly=on,cache=writeback",
                  "id=scratch,file=/img/scratch.ext4,format=raw,if=none,readonly=off,cache=writeback"}));
  Argv blk;
  for (const auto& d : values_of(a, "-device")) {
    if (d.rfind("virtio-blk-device", 0) == 0) blk.push_back(d);
  }
  EXPECT_EQ(blk, (Argv{"virtio-blk-device,drive=rootfs,serial=rootfs",
                       "virtio-blk-device,drive=scratch,serial=scratch"}));
}

TEST(QemuCommandLine, CommasInPathsAreDoubled) {
  VmSpec s = base_spec();
  s.dir = "/tmp/a,b";
  s.console_log = "/tmp/a,b/console.log";
  s.agent_socket = "/tmp/a,b/agent.sock";
  s.drives = {{"root", "/img/x,y.raw", false}};
  const Argv a = launch(s);
  EXPECT_NE(value_of(a, "-object").find("mem-path=/tmp/a,,b/mem,share=on"), std::string::npos);
  EXPECT_NE(value_of(a, "-drive").find("file=/img/x,,y.raw,"), std::string::npos);
  EXPECT_TRUE(has(values_of(a, "-chardev"), "socket,id=qmp,path=/tmp/a,,b/qmp.sock,server=on,wait=off"));
  EXPECT_TRUE(has(values_of(a, "-chardev"), "socket,id=agent,path=/tmp/a,,b/agent.sock,server=on,wait=off"));
  EXPECT_EQ(QemuCommandLine::escape("a,,b,"), "a,,,,b,,");
}

TEST(QemuCommandLine, NicsOnTaps) {
  VmSpec s = base_spec();
  s.nics = {{"eth0", "tap0", "02:fc:00:00:00:02"}, {"eth1", "tap1", ""}};
  const Argv a = launch(s);
  EXPECT_EQ(values_of(a, "-netdev"), (Argv{"tap,id=eth0,ifname=tap0,script=no,downscript=no",
                                           "tap,id=eth1,ifname=tap1,script=no,downscript=no"}));
  const Argv devices = values_of(a, "-device");
  EXPECT_TRUE(has(devices, "virtio-net-device,netdev=eth0,mac=02:fc:00:00:00:02"));
  EXPECT_TRUE(has(devices, "virtio-net-device,netdev=eth1"));
}

TEST(QemuCommandLine, AgentPort) {
  const Argv a = launch(base_spec());
  const Argv devices = values_of(a, "-device");
  EXPECT_TRUE(has(devices, "virtio-serial-device"));
  EXPECT_TRUE(has(devices, "virtserialport,chardev=agent,name=" + std::string(agent::kPortName)));
  EXPECT_TRUE(has(values_of(a, "-chardev"),
                  "socket,id=agent,path=/var/lib/fcvm/vms/web1/agent.sock,server=on,wait=off"));
}

// The guest gets entropy from the host at once, in every VM and every clone alike.
TEST(QemuCommandLine, EntropyDevice) {
  const Argv a = launch(base_spec());
  EXPECT_TRUE(has(values_of(a, "-object"), "rng-random,id=rng0,filename=/dev/urandom"));
  EXPECT_TRUE(has(values_of(a, "-device"), "virtio-rng-device,rng=rng0"));
}

TEST(QemuCommandLine, NoAgentSocketNoSerialBus) {
  VmSpec s = base_spec();
  s.agent_socket.clear();
  const Argv devices = values_of(launch(s), "-device");
  EXPECT_FALSE(has(devices, "virtio-serial-device"));
}

TEST(QemuCommandLine, RejectsBadSpecs) {
  struct Case {
    const char* what;
    void (*mutate)(VmSpec&);
    const char* expect;  // a fragment of the message
  };
  const Case cases[] = {
      {"no kernel", [](VmSpec& s) { s.kernel.clear(); }, "kernel"},
      {"no dir", [](VmSpec& s) { s.dir.clear(); }, "directory"},
      {"zero vcpus", [](VmSpec& s) { s.vcpus = 0; }, "vcpus"},
      {"zero memory", [](VmSpec& s) { s.memory_mib = 0; }, "memory_mib"},
      {"drive id with comma", [](VmSpec& s) { s.drives = {{"a,b", "/x", false}}; }, "drive id 'a,b'"},
      {"drive id starts with digit", [](VmSpec& s) { s.drives = {{"1a", "/x", false}}; }, "drive id '1a'"},
      {"drive id too long for serial",
       [](VmSpec& s) { s.drives = {{"abcdefghijklmnopqrstu", "/x", false}}; }, "20 bytes"},
      {"duplicate drive", [](VmSpec& s) { s.drives = {{"a", "/x", false}, {"a", "/y", false}}; }, "twice"},
      {"drive without path", [](VmSpec& s) { s.drives = {{"a", "", false}}; }, "no path"},
      {"bad mac", [](VmSpec& s) { s.nics = {{"eth0", "tap0", "02:fc:00:00:00"}}; }, "MAC"},
      {"mac not hex", [](VmSpec& s) { s.nics = {{"eth0", "tap0", "02:fc:00:00:00:zz"}}; }, "MAC"},
      {"no tap", [](VmSpec& s) { s.nics = {{"eth0", "", ""}}; }, "tap"},
      {"tap name too long", [](VmSpec& s) { s.nics = {{"eth0", "tap0123456789abcdef", ""}}; }, "interface name"},
      {"duplicate nic", [](VmSpec& s) { s.nics = {{"eth0", "t0", ""}, {"eth0", "t1", ""}}; }, "twice"},
      {"qmp socket path too long", [](VmSpec& s) { s.dir = "/" + std::string(120, 'd'); }, "unix socket"},
      {"agent socket path too long",
       [](VmSpec& s) { s.agent_socket = "/" + std::string(120, 'a'); }, "agent socket"},
  };
  for (const auto& c : cases) {
    VmSpec s = base_spec();
    c.mutate(s);
    auto argv = QemuCommandLine::for_launch(s, host());
    ASSERT_FALSE(argv.ok()) << c.what;
    EXPECT_EQ(argv.status().code(), Errc::invalid_argument) << c.what;
    EXPECT_NE(argv.status().message().find(c.expect), std::string::npos)
        << c.what << ": " << argv.status().message();
  }
}

StateFileHeader snapshot_of(const VmSpec& source) {
  return StateFileHeader::from_spec(source, QemuCommandLine::kernel_cmdline(source.cmdline, host()), "tcg");
}

RestoreSpec clone_of(const VmSpec& source) {
  RestoreSpec r;
  r.vm = source;
  r.vm.name = "clone1";
  r.vm.dir = "/var/lib/fcvm/vms/clone1";
  r.vm.console_log = "/var/lib/fcvm/vms/clone1/console.log";
  r.vm.agent_socket = "/var/lib/fcvm/vms/clone1/agent.sock";
  // Ignored on restore: they come from the snapshot.
  r.vm.vcpus = 7;
  r.vm.memory_mib = 9999;
  r.vm.kernel = "/other/kernel";
  r.vm.cmdline = "ignored";
  r.snapshot = {"/snaps/s1/state", "/snaps/s1/mem"};
  r.memory = {MemorySourceKind::file, "/snaps/s1/mem"};
  return r;
}

TEST(QemuCommandLine, RestoreMapsImagePrivatelyAndWaitsForStream) {
  VmSpec source = base_spec();
  source.drives = {{"root", "/img/root", true}};
  RestoreSpec r = clone_of(source);
  r.vm.drives = {{"root", "/clones/1/root", true}};
  auto argv = QemuCommandLine::for_restore(r, snapshot_of(source), host());
  ASSERT_TRUE(argv.ok()) << argv.status().message();
  const Argv& a = *argv;
  EXPECT_EQ(value_of(a, "-object"),
            "memory-backend-file,id=mem,size=512M,mem-path=/snaps/s1/mem,share=off");
  EXPECT_EQ(value_of(a, "-incoming"), "defer");
  EXPECT_TRUE(has(a, "-S")) << "a restore must stay paused until it is told to resume";
  // Machine from the snapshot, layout from the restore.
  EXPECT_EQ(value_of(a, "-smp"), "2");
  EXPECT_EQ(value_of(a, "-m"), "512M");
  EXPECT_EQ(value_of(a, "-kernel"), "/k/vmlinux");
  EXPECT_EQ(value_of(a, "-append"), "console=ttyS0 quiet reboot=t");
  EXPECT_NE(value_of(a, "-drive").find("file=/clones/1/root,"), std::string::npos);
  EXPECT_TRUE(has(values_of(a, "-chardev"),
                  "socket,id=qmp,path=/var/lib/fcvm/vms/clone1/qmp.sock,server=on,wait=off"));
}

TEST(QemuCommandLine, RestoreArgvMatchesBootArgvExceptMemoryAndIncoming) {
  // QEMU only loads a stream into the same machine: everything but the memory backend's
  // path/share and the incoming flags must be identical when the layout is the same.
  VmSpec source = base_spec();
  source.drives = {{"root", "/img/root", true}};
  source.nics = {{"eth0", "tap0", "02:fc:00:00:00:02"}};
  RestoreSpec r = clone_of(source);
  r.vm.dir = source.dir;
  r.vm.console_log = source.console_log;
  r.vm.agent_socket = source.agent_socket;
  r.vm.name = source.name;
  r.memory.path = QemuCommandLine::memory_file(source.dir);
  Argv boot = launch(source);
  auto restored = QemuCommandLine::for_restore(r, snapshot_of(source), host());
  ASSERT_TRUE(restored.ok());
  Argv tail = *restored;
  ASSERT_GE(tail.size(), 3u);
  EXPECT_EQ(Argv(tail.end() - 3, tail.end()), (Argv{"-incoming", "defer", "-S"}));
  tail.resize(tail.size() - 3);
  for (auto& item : tail) {
    if (item.rfind("memory-backend-file", 0) == 0) item.replace(item.find("share=off"), 9, "share=on");
  }
  EXPECT_EQ(tail, boot);
}

TEST(QemuCommandLine, RestoreTakesSnapshotMacWhenCloneGivesNone) {
  VmSpec source = base_spec();
  source.nics = {{"eth0", "tap0", "02:fc:00:00:00:09"}};
  RestoreSpec r = clone_of(source);
  r.vm.nics = {{"eth0", "tap7", ""}};
  auto argv = QemuCommandLine::for_restore(r, snapshot_of(source), host());
  ASSERT_TRUE(argv.ok());
  EXPECT_EQ(value_of(*argv, "-netdev"), "tap,id=eth0,ifname=tap7,script=no,downscript=no");
  EXPECT_TRUE(has(values_of(*argv, "-device"), "virtio-net-device,netdev=eth0,mac=02:fc:00:00:00:09"));
}

TEST(QemuCommandLine, RestoreUsesSnapshotMemoryWhenSourcePathEmpty) {
  RestoreSpec r = clone_of(base_spec());
  r.memory.path.clear();
  auto argv = QemuCommandLine::for_restore(r, snapshot_of(base_spec()), host());
  ASSERT_TRUE(argv.ok());
  EXPECT_NE(value_of(*argv, "-object").find("mem-path=/snaps/s1/mem,"), std::string::npos);
}

TEST(QemuCommandLine, UffdRestoreUsesAnonymousRamAndTheShimsEnvironment) {
  RestoreSpec r = clone_of(base_spec());
  r.memory = {MemorySourceKind::uffd, "/run/pager.sock"};
  const auto snapshot = snapshot_of(base_spec());
  auto argv = QemuCommandLine::for_restore(r, snapshot, host());
  ASSERT_TRUE(argv.ok()) << argv.status().message();
  EXPECT_EQ(value_of(*argv, "-object"), "memory-backend-ram,id=mem,size=" + std::to_string(snapshot.memory_mib) + "M");
  EXPECT_EQ(QemuCommandLine::uffd_environment("/lib/shim.so", "/run/pager.sock", snapshot),
            (Argv{"LD_PRELOAD=/lib/shim.so", "FCVM_UFFD_SOCKET=/run/pager.sock",
                  "FCVM_UFFD_MEM_SIZE=" + std::to_string(std::uint64_t{snapshot.memory_mib} << 20)}));
  r.memory.path.clear();
  argv = QemuCommandLine::for_restore(r, snapshot, host());
  ASSERT_FALSE(argv.ok());
  EXPECT_EQ(argv.status().code(), Errc::invalid_argument);
}

TEST(QemuCommandLine, RestoreRefusesOtherLayout) {
  VmSpec source = base_spec();
  source.drives = {{"root", "/img/root", true}, {"data", "/img/data", false}};
  RestoreSpec r = clone_of(source);
  r.vm.drives = {{"data", "/c/data", false}, {"root", "/c/root", true}};
  auto argv = QemuCommandLine::for_restore(r, snapshot_of(source), host());
  ASSERT_FALSE(argv.ok());
  EXPECT_EQ(argv.status().code(), Errc::invalid_argument);
  EXPECT_NE(argv.status().message().find("[root,data]"), std::string::npos) << argv.status().message();

  r = clone_of(source);
  r.vm.agent_socket.clear();
  argv = QemuCommandLine::for_restore(r, snapshot_of(source), host());
  ASSERT_FALSE(argv.ok());
  EXPECT_NE(argv.status().message().find("agent"), std::string::npos);
}

}  // namespace
}  // namespace fcvm::qemu
