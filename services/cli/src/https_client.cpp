#include "skiff/cli/https_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace skiff::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

Answer Call(const Credentials& credentials, const std::string& method, const std::string& path_and_query,
            const std::string& body) {
  const std::string prefix = "https://";
  if (credentials.url.rfind(prefix, 0) != 0) throw Unreachable("the API URL must start with https://: " + credentials.url);
  std::string host_port = credentials.url.substr(prefix.size());
  host_port = host_port.substr(0, host_port.find('/'));
  const auto colon = host_port.rfind(':');
  const std::string host = colon == std::string::npos ? host_port : host_port.substr(0, colon);
  const std::string port = colon == std::string::npos ? "443" : host_port.substr(colon + 1);
  try {
    asio::io_context io;
    asio::ssl::context tls(asio::ssl::context::tls_client);
    if (credentials.ca_file.empty()) tls.set_default_verify_paths();
    else tls.load_verify_file(credentials.ca_file);
    tls.set_verify_mode(asio::ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(io, tls);
    SSL_set_tlsext_host_name(stream.native_handle(), host.c_str());
    stream.set_verify_callback(asio::ssl::host_name_verification(host));
    asio::ip::tcp::resolver resolver(io);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
    beast::get_lowest_layer(stream).connect(resolver.resolve(host, port));
    stream.handshake(asio::ssl::stream_base::client);
    http::request<http::string_body> request(http::string_to_verb(method), path_and_query, 11);
    request.set(http::field::host, host_port);
    request.set(http::field::authorization, "Bearer " + credentials.token);
    request.set(http::field::user_agent, "skiff-cli");
    if (!body.empty()) {
      request.set(http::field::content_type, "application/json");
      request.body() = body;
    }
    request.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(120));
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    http::read(stream, buffer, parser);
    beast::error_code ignored;
    stream.shutdown(ignored);
    return {static_cast<int>(parser.get().result_int()), parser.get().body()};
  } catch (const boost::system::system_error& e) {
    throw Unreachable("cannot reach the Skiff API at " + credentials.url + ": " + e.code().message());
  }
}

}  // namespace skiff::cli
