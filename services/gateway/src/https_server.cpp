#include "skiff/gateway/https_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <deque>

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

namespace websocket = beast::websocket;

// One accepted WebSocket: reads on a loop, writes from a queue, all on the connection's strand.
class WsSession : public WebSocketConnection, public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(ssl::stream<beast::tcp_stream>&& stream, std::shared_ptr<WebSocketSession> app,
            std::atomic<int>& open_sessions)
      : ws_(std::move(stream)), app_(std::move(app)), open_sessions_(open_sessions) {
    ++open_sessions_;
  }
  ~WsSession() override { --open_sessions_; }

  void Accept(http::request<http::string_body> request) {
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "skiff-gateway"); }));
    ws_.read_message_max(1024 * 1024);
    ws_.async_accept(request, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      self->open_ = true;
      self->app_->OnOpen(self);
      self->Read();
    });
  }

  void Send(std::string data, bool binary) override {
    net::post(ws_.get_executor(), [self = shared_from_this(), data = std::move(data), binary]() mutable {
      if (!self->open_ || self->closing_) return;
      self->outbox_.push_back({std::move(data), binary});
      if (self->outbox_.size() == 1) self->Write();
    });
  }

  void Close(uint16_t code, std::string reason) override {
    net::post(ws_.get_executor(), [self = shared_from_this(), code, reason = std::move(reason)] {
      if (!self->open_ || self->closing_) return;
      self->closing_ = true;
      self->close_reason_ = websocket::close_reason(static_cast<websocket::close_code>(code), reason);
      if (self->outbox_.empty()) self->DoClose();  // else after the queued writes
    });
  }

 private:
  struct Outgoing {
    std::string data;
    bool binary;
  };
  void Read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->Finish();
      std::string data = beast::buffers_to_string(self->buffer_.data());
      self->buffer_.consume(self->buffer_.size());
      self->app_->OnMessage(data, !self->ws_.got_text());
      self->Read();
    });
  }
  void Write() {
    ws_.binary(outbox_.front().binary);
    ws_.async_write(net::buffer(outbox_.front().data), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->Finish();
      self->outbox_.pop_front();
      if (!self->outbox_.empty()) return self->Write();
      if (self->closing_) self->DoClose();
    });
  }
  void DoClose() {
    ws_.async_close(close_reason_, [self = shared_from_this()](beast::error_code) { self->Finish(); });
  }
  void Finish() {
    if (finished_) return;
    finished_ = true;
    open_ = false;
    app_->OnClose();
  }

  websocket::stream<ssl::stream<beast::tcp_stream>> ws_;
  std::shared_ptr<WebSocketSession> app_;
  std::atomic<int>& open_sessions_;
  beast::flat_buffer buffer_;
  std::deque<Outgoing> outbox_;
  websocket::close_reason close_reason_;
  bool open_ = false;
  bool closing_ = false;
  bool finished_ = false;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, ssl::context& ctx, const HttpsServerOptions& options, const RequestHandler& handler,
          const WebSocketAcceptor& acceptor, std::atomic<int>& open_sessions)
      : stream_(std::move(socket), ctx), options_(options), handler_(handler), acceptor_(acceptor),
        open_sessions_(open_sessions) {
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
    if (acceptor_ && websocket::is_upgrade(request)) {
      WebSocketDecision decision = acceptor_(FromBeast(request));
      if (!decision.session) return Send(ToBeast(decision.refusal, request.version(), false));
      std::make_shared<WsSession>(std::move(stream_), std::move(decision.session), open_sessions_)
          ->Accept(std::move(request));
      return;
    }
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
  const WebSocketAcceptor& acceptor_;
  std::atomic<int>& open_sessions_;
};

}  // namespace

struct HttpsServer::Impl {
  HttpsServerOptions options;
  RequestHandler handler;
  WebSocketAcceptor upgrades;
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
        std::make_shared<Session>(std::move(socket), tls, options, handler, upgrades, open_sessions)->Run();
      }
      Accept();
    });
  }
};

HttpsServer::HttpsServer(HttpsServerOptions options, RequestHandler handler, WebSocketAcceptor acceptor)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
  impl_->upgrades = std::move(acceptor);
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
