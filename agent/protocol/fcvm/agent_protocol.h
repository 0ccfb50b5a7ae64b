// Wire protocol between the host (fcvm) and fc-agent, the guest's PID 1.
//
// Transport (the VMM plugin's choice, fcvm::AgentTransport): a virtio-serial port named
// kPortName, which QEMU exposes on the host as a unix socket; or, where the guest has no such
// port, an AF_VSOCK stream the host opens to the agent listening on kVsockPort (Firecracker
// relays it from its vsock unix socket). The byte stream carries frames:
//
//   u32 payload_length (little endian) | u8 type | u32 session (little endian) | payload
//
// Session 0 is the container's main process; exec sessions use ids > 0 chosen by the host.
// Payloads are JSON objects except STDOUT/STDERR/STDIN, which carry raw bytes.
//
// Guest -> host (high bit clear)          Host -> guest (high bit set)
//   HELLO    {"agent","protocol","kernel",    PLAN      Plan (agent_plan.h), session 0
//             "uptime_ms","boot_id"}
//   STARTED  {"pid"}                          EXEC      Process (agent_plan.h), session > 0
//   STDOUT   bytes                            STDIN     bytes
//   STDERR   bytes                            STDIN_EOF empty
//   EXIT     {"code","signal"}                SIGNAL    {"signal"}
//   ERROR    {"message"}                      SHUTDOWN  {"timeout_ms"}
//   ATTACHED {"generation","boot_id",         ATTACH    {"generation","wall_time_ns",
//             "sessions","uptime_ms"}                    "entropy"}
//   STDIN_CREDIT {"bytes"}                    CREDIT    {"bytes"}
//   READY    {} (plan held, session 0)        GO        {"hostname"?}, session 0
//                                             RESIZE    {"rows","cols"}
//
// New frame types are appended at the end of their direction's range; numbers never change.
//
// Attach: the host sends ATTACH as its first frame on every connection it opens, after a
// boot (following HELLO) or a restore (the agent may have been mid-stream when the
// snapshot was taken and never learns that the host it talked to is gone). The agent
// answers ATTACHED with the same generation, its boot id (random, drawn once when the agent
// starts and kept in guest memory: a clone restored from a snapshot reports the snapshot's,
// a fresh boot a new one) and its live sessions; then it steps the guest's wall clock to
// wall_time_ns, mixes entropy (at least 32 bytes, hex) into the kernel's RNG (clones must
// not share random streams) and flushes the neighbour (ARP) cache. The host compares the
// boot id with the one it expects and refuses a clone that booted afresh.
// Torn frames: whenever its connection to the host drops (hang-up, a new vsock
// connection), the agent discards a partly received frame and sends a partly sent one
// again from its start on the next connection, so every connection begins at a frame
// boundary in both directions.
//
// Startup barrier (a plan with "hold": true, agent_plan.h): the agent applies the plan
// (root, hostname, /etc files, network) and, instead of starting the main process, sends
// READY and waits. The host may snapshot the VM there (a startup snapshot: later starts
// restore it, ATTACH, and continue from this point). GO starts the main process; its
// optional hostname replaces the plan's first (a restored start has its own name). GO is
// refused with an ERROR unless the agent is holding. READY, GO and "hold" were added
// without a version bump: a plan without "hold" behaves as before.
//
// Flow control, per session, so that one slow consumer stalls only its own session:
// - Output: a Process with output_window = W > 0 (agent_plan.h) may have at most W bytes of
//   STDOUT+STDERR payload sent and not yet credited. The host sends CREDIT {"bytes": n} as it
//   consumes n of them; until then the agent stops reading the process's pipes, so the
//   process blocks on them. output_window 0 (the default) means no window.
// - Input: the host may have at most kStdinWindow bytes of STDIN payload sent and not yet
//   credited; the agent sends STDIN_CREDIT {"bytes": n} once it has written n of them into
//   the process's pipe (or dropped them because the process closed its stdin). STDIN beyond
//   the window is a protocol error for that session: the excess is dropped and reported.
//
// Terminals: a Process with "tty" (agent_plan.h) runs on a pseudo-terminal the agent
// allocates: the terminal is its stdin, stdout and stderr and its controlling terminal, so
// its output (both streams, merged as a terminal merges them) arrives as STDOUT, STDIN
// bytes are typed into it (a Ctrl-C byte becomes SIGINT through the line discipline), and
// STDIN_EOF types the terminal's end-of-file character. RESIZE sets the terminal's window
// size (the process gets SIGWINCH); it is dropped for a session without a terminal.
// "tty" and RESIZE were added without a version bump: a process without "tty" behaves as
// before; an agent that predates them refuses a tty process (unknown field), and the host
// sends RESIZE only to a session whose process STARTED with a terminal.
//
// Conversation: the agent sends HELLO as soon as its port is open and repeats it every
// second until a PLAN arrives (bytes written before the host connects may be lost), so the
// host must accept several HELLOs. An ERROR on session 0 before STARTED on session 0 means
// the plan failed; the agent then powers the VM off. A decoding error (oversize payload,
// unknown type) cannot be resynchronised: either side treats it as fatal for the channel.
//
// Per session the agent sends STARTED, then STDOUT/STDERR, then EXIT; or, when the process
// could not be started, ERROR then EXIT (127 not found, 126 otherwise, including an EXEC
// that is malformed, arrives before PLAN or during shutdown). Two refusals carry no EXIT,
// since that session id belongs to a live process: EXEC on session 0 and EXEC on a session
// in use. STDIN/STDIN_EOF/SIGNAL for a session that has exited (or, for STDIN, whose
// process has no stdin pipe) are dropped: they race with the process's exit.
//
// The framing (frame layout, types, encoder and decoder) is in agent_framing.h, the
// messages (JSON payloads) in agent_messages.h; this header pulls in both.
#pragma once

#include "fcvm/agent_framing.h"   // IWYU pragma: export
#include "fcvm/agent_messages.h"  // IWYU pragma: export
