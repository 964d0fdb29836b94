#include "skiff/imagecache/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <sys/socket.h>

#include <array>
#include <limits>
#include <sys/time.h>

namespace skiff::imagecache {
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;

std::optional<Url> Url::Parse(const std::string& text) {
  Url url;
  auto scheme_end = text.find("://");
  if (scheme_end == std::string::npos) return std::nullopt;
  url.scheme = text.substr(0, scheme_end);
  if (url.scheme != "http" && url.scheme != "https") return std::nullopt;
  auto rest = text.substr(scheme_end + 3);
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  url.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (authority.empty() || authority.find('@') != std::string::npos) return std::nullopt;
  auto colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']') == std::string::npos) {
    url.host = authority.substr(0, colon);
    url.port = authority.substr(colon + 1);
  } else {
    url.host = authority;
    url.port = url.scheme == "https" ? "443" : "80";
  }
  if (url.host.empty() || url.port.empty()) return std::nullopt;
  return url;
}

std::string Url::HostPort() const {
  bool default_port = (scheme == "https" && port == "443") || (scheme == "http" && port == "80");
  return default_port ? host : host + ":" + port;
}

std::string Url::String() const { return scheme + "://" + HostPort() + target; }

std::optional<Url> Url::Resolve(const std::string& location) const {
  if (location.rfind("http://", 0) == 0 || location.rfind("https://", 0) == 0) return Parse(location);
  if (!location.empty() && location[0] == '/') {
    Url next = *this;
    next.target = location;
    return next;
  }
  return std::nullopt;
}

BeastHttpClient::BeastHttpClient(std::string extra_ca_file, int timeout_seconds)
    : extra_ca_file_(std::move(extra_ca_file)), timeout_seconds_(timeout_seconds) {}

namespace {

void SetSocketTimeouts(tcp::socket& socket, int seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

template <typename Stream>
HttpResult Exchange(Stream& stream, const Url& url, const std::vector<std::pair<std::string, std::string>>& headers,
                    const BodySink* sink) {
  http::request<http::empty_body> request{http::verb::get, url.target, 11};
  request.set(http::field::host, url.HostPort());
  request.set(http::field::user_agent, "skiff-imagecache/0.1");
  for (const auto& [name, value] : headers) request.set(name, value);
  http::write(stream, request);

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  // Not boost::none: Boost 1.74 compares Content-Length against an empty optional and fails.
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  http::read_header(stream, buffer, parser);
  HttpResult result;
  result.status = parser.get().result_int();
  for (const auto& field : parser.get()) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    result.headers[name] = std::string(field.value());
  }
  const bool stream_body = sink != nullptr && (result.status == 200 || result.status == 206);
  std::array<char, 256 * 1024> chunk;
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    beast::error_code ec;
    http::read(stream, buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    size_t got = chunk.size() - parser.get().body().size;
    if (stream_body) {
      if (got > 0 && !(*sink)(result.status, chunk.data(), got)) {
        result.error = "aborted by receiver";
        result.body_complete = false;
        return result;
      }
    } else if (result.body.size() < 64 * 1024) {
      result.body.append(chunk.data(), got);
    }
    if (ec) {
      result.error = ec.message();
      result.body_complete = false;
      return result;
    }
  }
  return result;
}

}  // namespace

HttpResult BeastHttpClient::Get(const Url& url, const std::vector<std::pair<std::string, std::string>>& headers,
                                const BodySink* sink) {
  try {
    net::io_context io;
    tcp::resolver resolver(io);
    auto endpoints = resolver.resolve(url.host, url.port);
    if (url.scheme == "http") {
      beast::tcp_stream stream(io);
      stream.connect(endpoints);
      SetSocketTimeouts(stream.socket(), timeout_seconds_);
      auto result = Exchange(stream, url, headers, sink);
      beast::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      return result;
    }
    ssl::context tls(ssl::context::tls_client);
    tls.set_default_verify_paths();
    if (!extra_ca_file_.empty()) tls.load_verify_file(extra_ca_file_);
    tls.set_verify_mode(ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(io, tls);
    if (!SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str())) {
      return {0, {}, "", "cannot set TLS server name", false};
    }
    stream.set_verify_callback(ssl::host_name_verification(url.host));
    beast::get_lowest_layer(stream).connect(endpoints);
    SetSocketTimeouts(beast::get_lowest_layer(stream).socket(), timeout_seconds_);
    stream.handshake(ssl::stream_base::client);
    auto result = Exchange(stream, url, headers, sink);
    beast::error_code ignored;
    stream.shutdown(ignored);
    return result;
  } catch (const std::exception& e) {
    HttpResult failed;
    failed.error = e.what();
    failed.body_complete = false;
    return failed;
  }
}

}  // namespace skiff::imagecache
