#include "skiff/gateway/https_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>

#include <array>
#include <atomic>
#include <optional>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "skiff/gateway/api_error.h"
#include "skiff/log/log.h"

namespace skiff::gateway {
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;

namespace {

HttpRequest FromBeast(const http::request<http::string_body>& req) {
  HttpRequest out;
  out.method = std::string(req.method_string());
  out.target = std::string(req.target());
  for (const auto& field : req) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(field.value());
  }
  out.body = req.body();
  return out;
}

http::response<http::string_body> ToBeast(const HttpResponse& res, unsigned version, bool keep_alive) {
  http::response<http::string_body> out{static_cast<http::status>(res.status), version};
  out.set(http::field::server, "skiff-gateway");
  for (const auto& [name, value] : res.headers) out.set(name, value);
  out.body() = res.body;
  out.keep_alive(keep_alive);
  out.prepare_payload();
  return out;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, ssl::context& ctx, const HttpsServerOptions& options, const RequestHandler& handler,
          std::atomic<int>& open_sessions)
      : stream_(std::move(socket), ctx), options_(options), handler_(handler), open_sessions_(open_sessions) {
    ++open_sessions_;
  }
  ~Session() { --open_sessions_; }

  void Run() {
    net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::OnRun, shared_from_this()));
  }

 private:
  void OnRun() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(30));
    stream_.async_handshake(ssl::stream_base::server,
                            beast::bind_front_handler(&Session::OnHandshake, shared_from_this()));
  }

  void OnHandshake(beast::error_code ec) {
    if (ec) return;  // TLS failures (plain HTTP, bad clients) just close
    DoRead();
  }

  void DoRead() {
    parser_.emplace();
    parser_->body_limit(options_.body_limit);
    parser_->header_limit(16 * 1024);
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(options_.idle_timeout_seconds));
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, std::size_t) {
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == net::ssl::error::stream_truncated) {
      return DoClose();
    }
    if (ec == beast::error::timeout || ec == net::error::operation_aborted) return;
    if (ec) {
      // The parser refused the request: answer once and close the connection.
      ApiError error = ec == http::error::body_limit
                           ? ApiError{ErrorKind::kRequestTooLarge,
                                      "The request body is larger than " + std::to_string(options_.body_limit) +
                                          " bytes.",
                                      ""}
                           : ApiError{ErrorKind::kBadHttpRequest, "Malformed HTTP request: " + ec.message(), ""};
      linger_ = true;  // the client may still be sending: read and drop it so it sees our answer
      return Send(ToBeast(ErrorResponse(error), 11, false));
    }
    auto request = parser_->release();
    HttpResponse response = handler_(FromBeast(request));
    Send(ToBeast(response, request.version(), request.keep_alive()));
  }

  void Send(http::response<http::string_body>&& response) {
    response_ = std::make_shared<http::response<http::string_body>>(std::move(response));
    http::async_write(stream_, *response_,
                      beast::bind_front_handler(&Session::OnWrite, shared_from_this(), response_->keep_alive()));
  }

  void OnWrite(bool keep_alive, beast::error_code ec, std::size_t) {
    if (ec) return;
    response_.reset();
    if (linger_) return Linger();
    if (!keep_alive) return DoClose();
    DoRead();
  }

  // Lingering close, as nginx does: closing with unread input makes the kernel send RST, which
  // can destroy the error response before the client reads it. Drain a bounded amount first.
  void Linger() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(5));
    stream_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      self->lingered_ += n;
      if (ec || self->lingered_ > kMaxLingerBytes) return self->DoClose();
      self->Linger();
    });
  }

  void DoClose() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(5));
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) {});
  }

  static constexpr size_t kMaxLingerBytes = 16 * 1024 * 1024;
  bool linger_ = false;
  size_t lingered_ = 0;
  std::array<char, 16384> scratch_{};
  ssl::stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http::response<http::string_body>> response_;
  const HttpsServerOptions& options_;
  const RequestHandler& handler_;
  std::atomic<int>& open_sessions_;
};

}  // namespace

struct HttpsServer::Impl {
  HttpsServerOptions options;
  RequestHandler handler;
  net::io_context io;
  ssl::context tls{ssl::context::tls_server};
  tcp::acceptor acceptor{io};
  std::vector<std::thread> threads;
  std::atomic<int> open_sessions{0};
  std::mutex mutex;
  std::condition_variable stopped_cv;
  bool stopped = false;

  void Accept() {
    acceptor.async_accept(net::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) {
        std::make_shared<Session>(std::move(socket), tls, options, handler, open_sessions)->Run();
      }
      Accept();
    });
  }
};

HttpsServer::HttpsServer(HttpsServerOptions options, RequestHandler handler) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

HttpsServer::~HttpsServer() { Stop(0); }

void HttpsServer::Start() {
  auto& tls = impl_->tls;
  tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  tls.use_certificate_chain_file(impl_->options.certificate_chain_file);
  tls.use_private_key_file(impl_->options.private_key_file, ssl::context::pem);

  tcp::endpoint endpoint{net::ip::make_address(impl_->options.address), impl_->options.port};
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(net::socket_base::reuse_address(true));
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen(net::socket_base::max_listen_connections);
  impl_->Accept();
  int threads = std::max(1, impl_->options.threads);
  for (int i = 0; i < threads; ++i) impl_->threads.emplace_back([this] { impl_->io.run(); });
}

uint16_t HttpsServer::BoundPort() const { return impl_->acceptor.local_endpoint().port(); }

void HttpsServer::Wait() {
  std::unique_lock lock(impl_->mutex);
  impl_->stopped_cv.wait(lock, [&] { return impl_->stopped; });
}

void HttpsServer::Stop(int grace_seconds) {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  net::post(impl_->io, [this] {
    beast::error_code ec;
    impl_->acceptor.close(ec);
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_seconds);
  while (impl_->open_sessions > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  impl_->io.stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  impl_->stopped_cv.notify_all();
}

}  // namespace skiff::gateway
