#include "api_client.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace fcvm::firecracker {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Protocol = asio::local::stream_protocol;
using Stream = beast::basic_stream<Protocol>;

constexpr std::size_t kMaxResponseBody = 1 << 20;

// Keeps printable ASCII of an untrusted string, capped, for an error message.
std::string printable(std::string_view text, std::size_t cap = 300) {
  std::string out;
  for (char c : text.substr(0, cap)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (text.size() > cap) out += "...";
  return out;
}

Status io_error(const ApiRequest& request, const char* step, const beast::error_code& ec) {
  if (ec == beast::error::timeout) {
    return error(Errc::timeout, request.describe() + ": Firecracker did not answer in time (" +
                                    step + ")");
  }
  if (ec == asio::error::connection_refused || ec == asio::error::not_found ||
      ec == boost::system::errc::no_such_file_or_directory) {
    return error(Errc::unavailable, request.describe() + ": nothing listens on the API socket (" +
                                        ec.message() + ")");
  }
  return error(Errc::io, request.describe() + ": " + step + ": " + ec.message());
}

}  // namespace

Result<ApiResponse> ApiClient::send(const ApiRequest& request, std::chrono::milliseconds timeout) const {
  try {
    asio::io_context io;
    Stream stream(io);
    http::request<http::string_body> req;
    req.method(http::string_to_verb(request.method));
    req.target(request.path);
    req.version(11);
    req.set(http::field::host, "localhost");
    req.set(http::field::accept, "application/json");
    if (!request.body.is_null()) {
      req.set(http::field::content_type, "application/json");
      req.body() = request.body.dump();
    }
    req.prepare_payload();

    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBody);
    beast::error_code failure;
    const char* failed_step = nullptr;
    auto fail = [&](const char* step, beast::error_code ec) {
      failure = ec;
      failed_step = step;
    };

    // One deadline for the whole exchange: connect, write and read.
    stream.expires_after(timeout);
    stream.async_connect(Protocol::endpoint(socket_.string()), [&](beast::error_code ec) {
      if (ec) return fail("connect", ec);
      http::async_write(stream, req, [&](beast::error_code wec, std::size_t) {
        if (wec) return fail("send", wec);
        http::async_read(stream, buffer, parser, [&](beast::error_code rec, std::size_t) {
          if (rec) return fail("read response", rec);
        });
      });
    });
    io.run();
    if (failed_step != nullptr) {
      if (failure == http::error::end_of_stream || failure == asio::error::eof ||
          failure == asio::error::connection_reset || failure == asio::error::broken_pipe) {
        return error(Errc::io, request.describe() + ": Firecracker closed the API connection (" +
                                   failed_step + ": " + failure.message() + ")");
      }
      if (failure.category() == beast::error_code(http::error::bad_version).category()) {
        return error(Errc::protocol, request.describe() + ": malformed response from Firecracker (" +
                                         failure.message() + ")");
      }
      return io_error(request, failed_step, failure);
    }
    auto res = parser.release();
    return ApiResponse{static_cast<unsigned>(res.result_int()), std::move(res.body())};
  } catch (const std::exception& e) {
    return error(Errc::io, request.describe() + ": " + e.what());
  }
}

Status ApiClient::fault(const ApiRequest& request, const ApiResponse& response) {
  std::string detail;
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_object() && body.contains("fault_message") && body["fault_message"].is_string()) {
    detail = printable(body["fault_message"].get<std::string>());
  } else if (!response.body.empty()) {
    detail = "(no fault_message) " + printable(response.body);
  } else {
    detail = "(empty body)";
  }
  const std::string reason =
      std::string(http::obsolete_reason(static_cast<http::status>(response.status)));
  return error(response.status == 400 ? Errc::invalid_argument : Errc::io,
               request.describe() + ": Firecracker answered " + std::to_string(response.status) +
                   (reason.empty() || reason == "<unknown-status>" ? "" : " " + reason) + ": " +
                   detail);
}

Result<std::string> ApiClient::call(const ApiRequest& request, std::chrono::milliseconds timeout) const {
  auto response = send(request, timeout);
  if (!response) return response.status();
  if (response->status < 200 || response->status >= 300) return fault(request, *response);
  return std::move(response->body);
}

}  // namespace fcvm::firecracker
