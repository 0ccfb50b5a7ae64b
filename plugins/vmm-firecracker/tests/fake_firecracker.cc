// fake_firecracker: stands in for the firecracker binary in tests (Firecracker cannot run
// without hardware KVM). `fake_firecracker --version` prints a version banner;
// `fake_firecracker --api-sock PATH` serves Firecracker's HTTP/1.1 API on PATH:
//   - every request body is validated against firecracker.yaml (400 on a mismatch);
//   - the call-order rules of the description hold: pre-boot-only resources are refused
//     after InstanceStart or a load; /snapshot/load only on a fresh process (logger and
//     metrics aside), and a failed load ends the process; snapshots only while paused;
//   - files are checked as Firecracker would open them, relative to the working directory
//     (drives, kernel, snapshot files, the drives a snapshot names);
//   - /snapshot/create writes a state file (the fake's config as JSON) and a memory file
//     (Full: a marker page at offset 0; Diff: a marker at page 1 merged into the file);
//   - once the guest "runs", the vsock unix socket answers CONNECT <port> with OK and then
//     echoes the stream.
// Every call is appended to ./fake-firecracker.calls ("PUT /drives/root 204"), and the MMDS
// data store of the last PUT /mmds is written to ./fake-firecracker.mmds. Behaviour is
// set by ./fake-firecracker.json, read at start: {"version": "1.16.1", "fault": "PUT
// /drives/x", "die": "PUT /snapshot/create", "vsock": "listen" | "refuse:N" | "garbage"}.
// FAKE_FC_VERSION sets the version for --version and GET /version.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "swagger_validator.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Protocol = asio::local::stream_protocol;
using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::uint64_t kPage = 4096;

struct Reply {
  unsigned status = 204;
  json body;  // null: none
};

Reply fault(const std::string& message) { return {400, {{"fault_message", message}}}; }

std::string version() {
  const char* v = std::getenv("FAKE_FC_VERSION");
  return v != nullptr ? v : "1.16.1";
}

class FakeFirecracker {
 public:
  FakeFirecracker(fcvm::firecracker::testing::SwaggerValidator api, json behaviour)
      : api_(std::move(api)), behaviour_(std::move(behaviour)) {}

  // Returns false when the process must exit after answering.
  Reply handle(const std::string& method, const std::string& path, const std::string& body_text,
               bool& exit_after) {
    json body = nullptr;
    if (!body_text.empty()) {
      body = json::parse(body_text, nullptr, false);
      if (body.is_discarded()) return fault("body is not JSON");
    }
    auto tmpl = api_.match_path(path);
    if (!tmpl) return fault("Invalid request method and/or path: " + method + " " + path);
    auto problems = api_.check_request(method, *tmpl, body);
    if (!problems.empty()) {
      std::string all;
      for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
      return fault("body does not match the API description: " + all);
    }
    if (behaviour_.value("fault", "") == method + " " + path) return fault("injected fault");
    return dispatch(method, *tmpl, path, body, exit_after);
  }

 private:
  bool pre_boot() const { return state_ == "Not started" && !loaded_; }

  Reply configure(const std::string& what) {
    if (!pre_boot()) return fault("The requested operation (" + what + ") is not supported after starting the microVM.");
    configured_ = true;
    return {};
  }

  Reply dispatch(const std::string& method, const std::string& tmpl, const std::string& path,
                 const json& body, bool& exit_after) {
    const std::string id = path.substr(path.rfind('/') + 1);
    if (method == "GET" && tmpl == "/") {
      return {200, {{"app_name", "Firecracker"}, {"id", "anonymous-instance"}, {"state", state_},
                    {"vmm_version", version()}}};
    }
    if (method == "GET" && tmpl == "/version") return {200, {{"firecracker_version", version()}}};
    if (tmpl == "/logger" || tmpl == "/metrics") {
      if (!pre_boot()) return fault(tmpl + " is pre-boot only");
      if (!initialized_.insert(tmpl).second) return fault(tmpl + " already initialized");
      const std::string file = body.value(tmpl == "/logger" ? "log_path" : "metrics_path", "");
      std::ofstream(file, std::ios::app) << "fake firecracker " << tmpl << "\n";
      return {};
    }
    if (tmpl == "/machine-config") {
      config_["machine"] = body;
      return configure(tmpl);
    }
    if (tmpl == "/boot-source") {
      if (!fs::exists(body["kernel_image_path"].get<std::string>())) return fault("Cannot open kernel image");
      config_["boot"] = body;
      return configure(tmpl);
    }
    if (tmpl == "/drives/{drive_id}") {
      if (body["drive_id"] != id) return fault("The id from the path does not match the id from the body!");
      if (!fs::exists(body["path_on_host"].get<std::string>())) {
        return fault("Unable to open block device file " + body["path_on_host"].get<std::string>());
      }
      config_["drives"][id] = body;
      return configure(tmpl);
    }
    if (tmpl == "/network-interfaces/{iface_id}") {
      if (body["iface_id"] != id) return fault("The id from the path does not match the id from the body!");
      config_["nics"][id] = body;
      return configure(tmpl);
    }
    if (tmpl == "/mmds/config") {
      for (const auto& nic : body["network_interfaces"]) {
        if (!config_["nics"].contains(nic.get<std::string>())) return fault("Invalid network interface ID");
      }
      config_["mmds_config"] = body;
      return configure(tmpl);
    }
    if (tmpl == "/mmds" && method == "PUT") {
      mmds_ = body;
      std::ofstream("fake-firecracker.mmds", std::ios::trunc) << mmds_.dump();
      return {};
    }
    if (tmpl == "/vsock") {
      config_["vsock"] = body;
      return configure(tmpl);
    }
    if (tmpl == "/entropy") {
      config_["entropy"] = body;
      return configure(tmpl);
    }
    if (tmpl == "/actions") {
      const std::string action = body["action_type"];
      if (action == "InstanceStart") {
        if (!pre_boot()) return fault("The microVM is already running");
        if (!config_.contains("boot")) return fault("Cannot start microvm without kernel configuration.");
        state_ = "Running";
        start_vsock();
        return {};
      }
      if (action == "SendCtrlAltDel") {
        if (state_ != "Running") return fault("SendCtrlAltDel needs a running guest");
        exit_after = true;  // the guest reboots; with reboot=k Firecracker exits
        return {};
      }
      return {};
    }
    if (tmpl == "/vm") {
      if (state_ == "Not started") return fault("The microVM is not started");
      state_ = body["state"] == "Paused" ? "Paused" : "Running";
      return {};
    }
    if (tmpl == "/snapshot/create") return snapshot_create(body);
    if (tmpl == "/snapshot/load") {
      Reply r = snapshot_load(body);
      if (r.status != 204) exit_after = true;  // a failed load ends Firecracker
      return r;
    }
    return fault("the fake does not implement " + method + " " + path);
  }

  Reply snapshot_create(const json& body) {
    if (state_ != "Paused") return fault("Cannot create snapshot: the microVM is not paused");
    const bool diff = body.value("snapshot_type", "Full") == "Diff";
    if (diff && !config_["machine"].value("track_dirty_pages", false)) {
      return fault("Diff snapshots need dirty page tracking");
    }
    const std::uint64_t size = config_["machine"]["mem_size_mib"].get<std::uint64_t>() << 20;
    const std::string mem = body["mem_file_path"];
    // As Firecracker: a file of matching size is merged into (Diff) or overwritten (Full).
    std::fstream f(mem, std::ios::in | std::ios::out | std::ios::binary);
    if (!f) f.open(mem, std::ios::out | std::ios::binary);
    f.close();
    if (fs::file_size(mem) != size) fs::resize_file(mem, 0);
    fs::resize_file(mem, size);
    ++snapshots_;
    std::fstream out(mem, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(diff ? static_cast<std::streamoff>(kPage) : 0);
    out << (diff ? "DIFF " : "FULL ") << snapshots_;
    out.close();
    std::ofstream(body["snapshot_path"].get<std::string>()) << config_.dump();
    return {};
  }

  Reply snapshot_load(const json& body) {
    if (configured_ || !pre_boot()) {
      return fault("Loading a microVM snapshot not allowed after configuring boot-specific resources.");
    }
    std::ifstream in(body["snapshot_path"].get<std::string>());
    if (!in) return fault("Cannot open snapshot file " + body["snapshot_path"].get<std::string>());
    json saved = json::parse(in, nullptr, false);
    if (saved.is_discarded()) return fault("Snapshot state file is corrupt");
    const auto& backend = body["mem_backend"];
    const std::string backend_path = backend["backend_path"];
    const std::uint64_t size = saved["machine"]["mem_size_mib"].get<std::uint64_t>() << 20;
    if (backend["backend_type"] == "File") {
      std::error_code ec;
      if (fs::file_size(backend_path, ec) != size) return fault("Memory file missing or of the wrong size");
    } else if (!connect_page_server(backend_path, size)) {
      return fault("Cannot connect to the UFFD handler at " + backend_path);
    }
    // Drives are reopened at their recorded (relative) paths.
    const json drives = saved.value("drives", json::object());
    for (const auto& [drive_id, drive] : drives.items()) {
      const std::string p = drive["path_on_host"];
      if (!fs::exists(p)) return fault("Block device " + drive_id + ": cannot open " + p);
    }
    for (const auto& o : body.value("network_overrides", json::array())) {
      if (!saved["nics"].contains(o["iface_id"].get<std::string>())) {
        return fault("Network override for an unknown interface " + o["iface_id"].get<std::string>());
      }
      saved["nics"][o["iface_id"].get<std::string>()]["host_dev_name"] = o["host_dev_name"];
    }
    if (body.contains("vsock_override")) {
      if (!saved.contains("vsock")) return fault("vsock_override without a vsock device");
      saved["vsock"]["uds_path"] = body["vsock_override"]["uds_path"];
    }
    if (body.value("track_dirty_pages", false)) saved["machine"]["track_dirty_pages"] = true;
    config_ = saved;
    loaded_ = true;
    state_ = body.value("resume_vm", false) ? "Running" : "Paused";
    start_vsock();
    return {};
  }

  // The UFFD handshake as seen by the page server: a connection and one JSON message of
  // regions (no userfaultfd is passed: the fake has no guest memory).
  static bool connect_page_server(const std::string& path, std::uint64_t size) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd);
      return false;
    }
    const std::string regions = json::array({{{"base_host_virt_addr", 0}, {"size", size}, {"offset", 0},
                                              {"page_size", kPage}, {"page_size_kib", kPage}}})
                                    .dump();
    const bool sent = ::send(fd, regions.data(), regions.size(), MSG_NOSIGNAL) ==
                      static_cast<ssize_t>(regions.size());
    ::close(fd);
    return sent;
  }

  void start_vsock() {
    if (!config_.contains("vsock") || vsock_started_) return;
    vsock_started_ = true;
    const std::string path = config_["vsock"]["uds_path"];
    std::error_code ec;
    fs::remove(path, ec);
    int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(listener, 8) != 0) {
      std::cerr << "fake firecracker: cannot listen on " << path << "\n";
      return;
    }
    std::string mode = behaviour_.value("vsock", "listen");
    int refusals = mode.rfind("refuse:", 0) == 0 ? std::stoi(mode.substr(7)) : 0;
    std::thread([listener, mode, refusals]() mutable {
      for (;;) {
        int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        std::thread(serve_vsock, c, mode, refusals > 0).detach();
        if (refusals > 0) --refusals;
      }
    }).detach();
  }

  // One host connection: the CONNECT line (read as Firecracker does), then the reply.
  static void serve_vsock(int c, std::string mode, bool refuse) {
    std::string line;
    char ch = 0;
    while (line.size() < 32 && ::read(c, &ch, 1) == 1) {
      line += ch;
      if (ch == '\n') break;
    }
    if (refuse || line.rfind("CONNECT ", 0) != 0) {  // nothing listens on the guest port
      ::close(c);
      return;
    }
    if (mode == "garbage") {
      const char reply[] = "NOPE\n";
      (void)!::write(c, reply, sizeof(reply) - 1);
      ::close(c);
      return;
    }
    const std::string ok = "OK 1073741824\n";
    (void)!::write(c, ok.data(), ok.size());
    char buf[4096];
    for (ssize_t n; (n = ::read(c, buf, sizeof(buf))) > 0;) {
      if (::write(c, buf, static_cast<size_t>(n)) != n) break;
    }
    ::close(c);
  }

  fcvm::firecracker::testing::SwaggerValidator api_;
  json behaviour_;
  json config_ = json::object();
  json mmds_;
  std::set<std::string> initialized_;
  std::string state_ = "Not started";
  bool configured_ = false;
  bool loaded_ = false;
  bool vsock_started_ = false;
  int snapshots_ = 0;
};

int serve(const std::string& socket_path) {
  json behaviour = json::object();
  if (std::ifstream in("fake-firecracker.json"); in) behaviour = json::parse(in);
  if (behaviour.contains("version")) ::setenv("FAKE_FC_VERSION", behaviour["version"].get<std::string>().c_str(), 1);
  std::ofstream journal("fake-firecracker.calls", std::ios::app);
  journal << "CWD " << fs::current_path().string() << std::endl;
  FakeFirecracker fake(fcvm::firecracker::testing::SwaggerValidator::load(FCVM_FIRECRACKER_API_YAML),
                       behaviour);

  asio::io_context io;
  Protocol::acceptor acceptor(io, Protocol::endpoint(socket_path));
  for (;;) {
    Protocol::socket socket(io);
    acceptor.accept(socket);
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      beast::error_code ec;
      http::read(socket, buffer, req, ec);
      if (ec) break;
      const std::string call = std::string(req.method_string()) + " " + std::string(req.target());
      if (behaviour.value("die", "") == call) {
        journal << call << " DIED" << std::endl;
        std::_Exit(3);  // mid-call: the request was read, no answer ever comes
      }
      bool exit_after = false;
      Reply reply = fake.handle(std::string(req.method_string()), std::string(req.target()), req.body(),
                                exit_after);
      journal << call << " " << reply.status << std::endl;
      http::response<http::string_body> res{static_cast<http::status>(reply.status), 11};
      res.set(http::field::server, "Firecracker API");
      if (!reply.body.is_null()) {
        res.set(http::field::content_type, "application/json");
        res.body() = reply.body.dump();
      }
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      http::write(socket, res, ec);
      if (exit_after) {
        journal << "EXIT" << std::endl;
        std::_Exit(reply.status == 204 ? 0 : 1);
      }
      if (ec || !req.keep_alive()) break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string api_sock;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--version") {
      std::cout << "Firecracker v" << version() << "\n\n";
      return 0;
    }
    if (arg == "--api-sock" && i + 1 < argc) api_sock = argv[++i];
  }
  if (api_sock.empty()) {
    std::cerr << "usage: fake_firecracker --api-sock PATH | --version\n";
    return 2;
  }
  try {
    return serve(api_sock);
  } catch (const std::exception& e) {
    std::cerr << "fake firecracker: " << e.what() << "\n";
    return 1;
  }
}
