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

// ---- container streams (exec, attach) -------------------------------------------------------

#include <boost/beast/websocket.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <sys/ioctl.h>
#include <unistd.h>

#include <csignal>

#include <deque>
#include <iostream>
#include <mutex>
#include <thread>

namespace skiff::cli {

namespace websocket = beast::websocket;

int JoinStream(const Credentials& credentials, const std::string& web_socket_uri, const std::string& password,
               bool send_input, bool forward_resize) {
  const std::string prefix = "wss://";
  if (web_socket_uri.rfind(prefix, 0) != 0) throw std::runtime_error("unexpected stream URI " + web_socket_uri);
  const std::string rest = web_socket_uri.substr(prefix.size());
  const std::string host_port = rest.substr(0, rest.find('/'));
  const std::string target = rest.substr(host_port.size());
  const auto colon = host_port.rfind(':');
  const std::string host = colon == std::string::npos ? host_port : host_port.substr(0, colon);
  const std::string port = colon == std::string::npos ? "443" : host_port.substr(colon + 1);
  asio::io_context io;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  if (credentials.ca_file.empty()) tls.set_default_verify_paths();
  else tls.load_verify_file(credentials.ca_file);
  tls.set_verify_mode(asio::ssl::verify_peer);
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws(io, tls);
  try {
    SSL_set_tlsext_host_name(ws.next_layer().native_handle(), host.c_str());
    ws.next_layer().set_verify_callback(asio::ssl::host_name_verification(host));
    asio::ip::tcp::resolver resolver(io);
    beast::get_lowest_layer(ws).expires_after(std::chrono::seconds(30));
    beast::get_lowest_layer(ws).connect(resolver.resolve(host, port));
    ws.next_layer().handshake(asio::ssl::stream_base::client);
    beast::get_lowest_layer(ws).expires_never();
    ws.handshake(host_port, target);
    ws.write(asio::buffer(password));
  } catch (const boost::system::system_error& e) {
    throw Unreachable("cannot open the stream at " + web_socket_uri + ": " + e.code().message());
  }

  // One thread runs the socket (reads, and writes posted to it); another reads standard input.
  std::deque<std::string> outgoing;
  bool writing = false;
  std::function<void()> write_next = [&] {
    if (writing || outgoing.empty()) return;
    writing = true;
    ws.binary(true);
    ws.async_write(asio::buffer(outgoing.front()), [&](beast::error_code error, size_t) {
      writing = false;
      outgoing.pop_front();
      if (!error) write_next();
    });
  };
  beast::flat_buffer buffer;
  bool closed = false;
  asio::signal_set window_changes(io);
  std::function<void()> read_next = [&] {
    ws.async_read(buffer, [&](beast::error_code error, size_t) {
      if (error) {
        closed = true;
        window_changes.cancel();  // io.run() returns once nothing waits
        return;
      }
      const auto data = buffer.data();
      std::cout.write(static_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
      std::cout.flush();
      buffer.consume(buffer.size());
      read_next();
    });
  };
  read_next();
  std::function<void()> watch_window = [&] {
    window_changes.async_wait([&](beast::error_code error, int) {
      if (error || closed) return;
      winsize size{};
      if (::ioctl(STDIN_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_row > 0 && size.ws_col > 0) {
        outgoing.push_back(ResizeMessage(size.ws_row, size.ws_col));
        write_next();
      }
      watch_window();
    });
  };
  if (forward_resize) {
    window_changes.add(SIGWINCH);
    watch_window();
  }
  std::thread input;
  if (send_input) {
    input = std::thread([&] {
      char chunk[4096];
      for (ssize_t n; (n = ::read(STDIN_FILENO, chunk, sizeof chunk)) > 0;) {
        asio::post(io, [&, text = std::string(chunk, static_cast<size_t>(n))] {
          if (closed) return;
          outgoing.push_back(text);
          write_next();
        });
      }
    });
    input.detach();  // blocked in read(2) until the user types: it ends with the process
  }
  io.run();
  const auto reason = ws.reason();
  const std::string text(reason.reason.data(), reason.reason.size());
  if (reason.code == websocket::close_code::normal && text.rfind("exit code ", 0) == 0) {
    return std::stoi(text.substr(10));
  }
  if (reason.code == websocket::close_code::normal || reason.code == websocket::close_code::none) return 0;
  throw std::runtime_error("the stream closed: " + (text.empty() ? std::to_string(reason.code) : text));
}

}  // namespace skiff::cli
