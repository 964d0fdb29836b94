#include "skiff/gateway/ingress.h"

#include <utility>  // before asio (Boost 1.74)

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <thread>

#include "skiff/log/log.h"

namespace skiff::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::optional<IngressTarget> IngressRouter::Route(const std::string& host_header) {
  std::string host = host_header;
  std::optional<int> asked_port;
  if (auto colon = host.rfind(':'); colon != std::string::npos) {
    const std::string digits = host.substr(colon + 1);
    if (digits.empty() || digits.size() > 5 || digits.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    asked_port = std::stoi(digits);
    host = host.substr(0, colon);
  }
  if (host.empty() || host.size() > 253) return std::nullopt;
  for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!host.empty() && host.back() == '.') host.pop_back();

  std::optional<network::v1::ResolveReply> reply;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    auto it = cache_.find(host);
    if (it != cache_.end() && now - it->second.at < cache_for_) {
      reply = it->second.reply;
    } else {
      reply = network_.Resolve(host);
      if (cache_.size() > 10000) cache_.clear();  // bounded under a scan of random names
      cache_[host] = {reply, now};
    }
  }
  if (!reply || !reply->found()) return std::nullopt;
  IngressTarget target;
  target.address = reply->public_ip().empty() ? reply->private_ip() : reply->public_ip();
  std::optional<int> first, eighty, asked;
  for (const auto& port : reply->ports()) {
    if (port.protocol() != "TCP") continue;
    if (!first) first = port.port();
    if (port.port() == 80) eighty = 80;
    if (asked_port && port.port() == *asked_port) asked = port.port();
  }
  auto chosen = asked ? asked : eighty ? eighty : first;
  if (!chosen) return std::nullopt;
  target.port = static_cast<uint16_t>(*chosen);
  return target;
}

struct IngressServer::State {
  IngressOptions options;
  IngressRouter& router;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread accept_thread;
  std::atomic<int> connections{0};
  std::atomic<bool> stopping{false};

  State(IngressOptions o, IngressRouter& r) : options(std::move(o)), router(r) {}

  static void BoundIo(tcp::socket& socket, std::chrono::seconds timeout) {
    struct timeval limit{static_cast<long>(timeout.count()), 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  }

  static void Answer(tcp::socket& socket, http::status status, const std::string& code, const std::string& message) {
    http::response<http::string_body> response{status, 11};
    response.set(http::field::content_type, "application/json; charset=utf-8");
    response.body() = R"({"error":{"code":")" + code + R"(","message":")" + message + R"("}})";
    response.keep_alive(false);
    response.prepare_payload();
    beast::error_code ignored;
    http::write(socket, response, ignored);
  }

  void Serve(tcp::socket socket) {
    beast::error_code ec;
    beast::flat_buffer buffer;
    http::request_parser<http::string_body> parser;
    parser.body_limit(options.body_limit);
    http::read(socket, buffer, parser, ec);
    if (ec) {
      if (ec != http::error::end_of_stream) Answer(socket, http::status::bad_request, "BadRequest", "Malformed HTTP request.");
      return;
    }
    auto request = parser.release();
    const std::string host(request[http::field::host]);
    auto target = router.Route(host);
    if (!target) {
      Answer(socket, http::status::not_found, "NoSuchHost", "No container group answers to this host name.");
      return;
    }
    // The upstream connection, bounded in time (SO_SNDTIMEO bounds connect too, on Linux): a
    // group that does not answer is a 502.
    tcp::socket upstream(io);
    tcp::endpoint endpoint(asio::ip::make_address(target->address, ec), target->port);
    if (!ec) upstream.open(endpoint.protocol(), ec);
    if (!ec) {
      BoundIo(upstream, options.upstream_timeout);
      upstream.connect(endpoint, ec);
    }
    if (ec) {
      Answer(socket, http::status::bad_gateway, "UpstreamUnavailable", "The container group did not accept the connection.");
      return;
    }
    std::string client = socket.remote_endpoint(ec).address().to_string();
    request.set("X-Forwarded-For", client);
    request.set("X-Forwarded-Host", host);
    request.set("X-Forwarded-Proto", "http");
    request.keep_alive(false);
    http::write(upstream, request, ec);
    beast::flat_buffer upstream_buffer;
    http::response_parser<http::string_body> response_parser;
    response_parser.body_limit(64 * 1024 * 1024);
    if (!ec) http::read(upstream, upstream_buffer, response_parser, ec);
    if (ec && ec != http::error::end_of_stream) {
      Answer(socket, http::status::bad_gateway, "UpstreamFailed", "The container group's answer was cut off or malformed.");
      return;
    }
    auto response = response_parser.release();
    response.keep_alive(false);
    http::write(socket, response, ec);
    socket.shutdown(tcp::socket::shutdown_both, ec);
  }
};

IngressServer::IngressServer(IngressOptions options, IngressRouter& router)
    : state_(std::make_unique<State>(std::move(options), router)) {}

IngressServer::~IngressServer() { Stop(); }

void IngressServer::Start() {
  auto& s = *state_;
  tcp::endpoint endpoint(asio::ip::make_address(s.options.address), s.options.port);
  s.acceptor.open(endpoint.protocol());
  s.acceptor.set_option(asio::socket_base::reuse_address(true));
  s.acceptor.bind(endpoint);
  s.acceptor.listen();
  s.accept_thread = std::thread([&s] {
    while (!s.stopping) {
      beast::error_code ec;
      tcp::socket socket(s.io);
      s.acceptor.accept(socket, ec);
      if (ec) {
        if (s.stopping) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      if (s.connections >= s.options.max_connections) {
        State::Answer(socket, http::status::service_unavailable, "TooManyConnections", "The ingress is busy; retry.");
        continue;
      }
      ++s.connections;
      std::thread([&s, socket = std::move(socket)]() mutable {
        // Bounded per connection: a client that sends nothing is dropped after the timeout.
        State::BoundIo(socket, s.options.upstream_timeout);
        try {
          s.Serve(std::move(socket));
        } catch (const std::exception& e) {
          spdlog::warn("ingress connection: {}", e.what());
        }
        --s.connections;
      }).detach();
    }
  });
}

uint16_t IngressServer::BoundPort() const { return state_->acceptor.local_endpoint().port(); }

void IngressServer::Stop() {
  auto& s = *state_;
  if (s.stopping.exchange(true)) return;
  beast::error_code ec;
  ::shutdown(s.acceptor.native_handle(), SHUT_RDWR);  // wakes the blocked accept
  s.acceptor.close(ec);
  if (s.accept_thread.joinable()) s.accept_thread.join();
  // Connections in flight finish on their own threads (bounded by the timeouts).
  for (int i = 0; i < 100 && s.connections > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

}  // namespace skiff::gateway
