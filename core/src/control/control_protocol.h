// The host control protocol: how `fcvm exec`, `stop`, `pause`, `unpause` and `snapshot
// create` talk to the fcvm process that runs a VM, over the unix socket <vm dir>/control.sock.
//
// Separate from the guest agent's protocol (fcvm/agent_protocol.h): clients are host
// processes, the server is the VM's event loop, and the schemas are this header's alone.
//
// Framing, both directions:  u32 payload_length (little endian) | u8 type | payload
//
//   client -> server                        server -> client
//     REQUEST   Request (JSON), first, once   REPLY   Reply (JSON), exactly one
//     STDIN     bytes (exec)                  STDOUT  bytes (exec)
//     STDIN_EOF empty (exec)                  STDERR  bytes (exec)
//     RESIZE    TerminalSize (JSON) (exec     EXIT    ExitReport (JSON), exec's last
//               with a tty)
//
// Requests carry "version"; a server refuses one whose version it does not speak. Every
// request gets one REPLY: {"ok":true} once the request took effect (exec: the command runs;
// stop: the stop has begun; pause/resume: the vCPUs stopped/run again; snapshot: the
// snapshot is in the store, and the reply says how long the guest was paused), else
// {"ok":false,"error":"..."}. Request kinds are added without a version bump: a server that
// does not know a kind refuses it by name. A refused exec request
// (malformed, wrong version, container not running) gets an error REPLY and the connection
// closes; an exec whose command the guest could not start gets an error REPLY then EXIT
// (126 cannot be run, 127 not found). A malformed frame closes the connection after an
// error REPLY. Nothing a client sends can stop the VM except a stop request.
//
// An exec with "tty" runs on a pseudo-terminal in the guest (its output comes as STDOUT
// only); RESIZE sets that terminal's size and is ignored for other sessions. Both were
// added within version 1 without changing anything else: a server that predates them
// refuses "tty" as an unknown field, and a client sends RESIZE only after such an exec.
//
// Threading: plain values and functions; nothing here throws (parse failures are Status).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fcvm/result.h"

namespace fcvm::control {

// Version of the framing and of every schema below.
inline constexpr int kVersion = 1;
inline constexpr std::size_t kHeaderSize = 5;
inline constexpr std::uint32_t kMaxPayload = 1u << 20;

enum class MessageType : std::uint8_t {
  // client -> server
  kRequest = 0x01,
  kStdin = 0x02,
  kStdinEof = 0x03,
  kResize = 0x04,
  // server -> client
  kReply = 0x81,
  kStdout = 0x82,
  kStderr = 0x83,
  kExit = 0x84,
};

// Who sends a message; a decoder accepts only messages travelling its way.
enum class Sender { client, server };

struct Message {
  MessageType type = MessageType::kRequest;
  std::string payload;
  bool operator==(const Message&) const = default;
};

// Appends one encoded message. Payloads over kMaxPayload are split into several messages
// for the byte streams (STDIN, STDOUT, STDERR); for the JSON messages they are a caller bug
// and are refused with invalid_argument.
Status append_message(std::string& out, MessageType type, std::string_view payload);

// Incremental decoder for one connection: feed it whatever a read returned. The first bad
// header (unknown type, wrong direction, oversize) fails it for good: the stream cannot be
// resynchronised.
class MessageDecoder {
 public:
  explicit MessageDecoder(Sender from) : from_(from) {}
  // Appends the messages `bytes` completes. Returns the error once the stream is bad
  // (messages decoded before the bad header are still appended).
  Status feed(std::string_view bytes, std::vector<Message>& out);
  bool failed() const { return !error_.empty(); }

 private:
  Sender from_;
  std::string buffer_;
  std::string error_;
};

// A terminal's size in characters: {"rows":R,"cols":C}, each 0..65535.
struct TerminalSize {
  std::uint16_t rows = 24;
  std::uint16_t cols = 80;
  bool operator==(const TerminalSize&) const = default;
};
std::string to_payload(const TerminalSize& size);
Result<TerminalSize> parse_terminal_size(std::string_view payload);

// exec: runs a command in the running container. Unset fields default to the container's
// main process (environment, working directory, user); env entries are added to it.
struct ExecRequest {
  std::vector<std::string> args;  // non-empty
  std::vector<std::string> env;   // KEY=VALUE
  std::optional<std::string> workdir;
  std::optional<std::string> user;  // UID[:GID] or NAME[:GROUP]
  bool stdin = false;               // the client streams STDIN, then STDIN_EOF
  std::optional<TerminalSize> tty;  // run on a pseudo-terminal of this size
  bool operator==(const ExecRequest&) const = default;
};

// stop: SIGTERM to the container, SIGKILL after timeout_ms, then the VM powers off.
struct StopRequest {
  std::uint32_t timeout_ms = 10000;  // at most 10 minutes
  bool operator==(const StopRequest&) const = default;
};

// pause: stops the guest's vCPUs (the container's clocks stand still; exec is refused until
// resume). Pausing a paused VM succeeds.
struct PauseRequest {
  bool operator==(const PauseRequest&) const = default;
};

// resume: runs a paused guest again. Resuming a running VM succeeds.
struct ResumeRequest {
  bool operator==(const ResumeRequest&) const = default;
};

// snapshot: pause, VMM state and memory (unless disk_only), disks, manifest, resume (a VM
// paused by a pause request stays paused). Served on the VM's event loop, which it blocks;
// the reply comes once the snapshot is committed. A client that hangs up before then
// abandons it: nothing is left in the store.
struct SnapshotRequest {
  std::string tag;         // non-empty; the store checks its spelling
  bool disk_only = false;  // disks alone: clones cold-boot
  bool operator==(const SnapshotRequest&) const = default;
};

// healthcheck: runs the VM's health check now (`fcvm healthcheck run`). The REPLY comes
// once the check has ended: ok when it passed, else the error is its failure and output.
// A VM without a health check, or whose container does not run, gets an error at once.
struct HealthcheckRequest {
  bool operator==(const HealthcheckRequest&) const = default;
};

using Request =
    std::variant<ExecRequest, StopRequest, PauseRequest, ResumeRequest, SnapshotRequest, HealthcheckRequest>;

// {"version":1,"request":"exec","args":[...],...} / {"version":1,"request":"stop",...} /
// {"version":1,"request":"pause"} / {"version":1,"request":"resume"} /
// {"version":1,"request":"snapshot","tag":"t","disk_only":false} /
// {"version":1,"request":"healthcheck"}
std::string to_payload(const Request& request);
// Strict: unknown fields, wrong types, a missing or other version are invalid_argument
// naming the field; never throws.
Result<Request> parse_request(std::string_view payload);

// What a successful snapshot request made.
struct SnapshotTaken {
  std::string tag;
  std::uint64_t pause_ms = 0;  // how long the guest was paused for it
  bool operator==(const SnapshotTaken&) const = default;
};

struct Reply {
  std::optional<std::string> error;      // nullopt: ok
  std::optional<SnapshotTaken> snapshot;  // set in the ok reply to a snapshot request
  bool ok() const { return !error; }
  bool operator==(const Reply&) const = default;
};
std::string to_payload(const Reply& reply);
Result<Reply> parse_reply(std::string_view payload);

// The exit status of an exec'd command: code as a shell reports it (128+signal when killed).
struct ExitReport {
  int code = 0;
  int signal = 0;
  bool operator==(const ExitReport&) const = default;
};
std::string to_payload(const ExitReport& exit);
Result<ExitReport> parse_exit_report(std::string_view payload);

}  // namespace fcvm::control
