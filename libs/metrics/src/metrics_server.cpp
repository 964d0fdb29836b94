// The /metrics listener: Boost.Asio, in this one translation unit only.
#include <utility>  // Boost 1.74's asio uses std::exchange without including it

#include <boost/asio.hpp>

#include <thread>

#include "skiff/metrics/metrics.h"

namespace skiff::metrics {

namespace asio = boost::asio;
using asio::ip::tcp;

struct MetricsServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread thread;
  Registry* registry = nullptr;
  int port = 0;
  std::string error;

  void Accept() {
    acceptor.async_accept([this](boost::system::error_code error, tcp::socket socket) {
      if (error) return;
      Answer(std::move(socket));
      Accept();
    });
  }

  // One request per connection, read with a deadline so a silent client cannot hold the thread.
  void Answer(tcp::socket socket) {
    auto shared = std::make_shared<tcp::socket>(std::move(socket));
    auto buffer = std::make_shared<asio::streambuf>(8192);
    auto timer = std::make_shared<asio::steady_timer>(io, std::chrono::seconds(5));
    timer->async_wait([shared](boost::system::error_code error) {
      if (!error) shared->close();
    });
    asio::async_read_until(*shared, *buffer, "\r\n\r\n",
                           [this, shared, buffer, timer](boost::system::error_code error, size_t) {
                             timer->cancel();
                             if (error) return;
                             std::istream in(buffer.get());
                             std::string method, target;
                             in >> method >> target;
                             std::string status = "200 OK", type = "text/plain; version=0.0.4", body;
                             if (method != "GET") {
                               status = "405 Method Not Allowed";
                               body = "only GET\n";
                             } else if (target == "/metrics") {
                               body = registry->Render();
                             } else if (target == "/healthz") {
                               body = "ok\n";
                             } else {
                               status = "404 Not Found";
                               body = "try /metrics\n";
                             }
                             auto response = std::make_shared<std::string>(
                                 "HTTP/1.1 " + status + "\r\nContent-Type: " + type +
                                 "\r\nContent-Length: " + std::to_string(body.size()) +
                                 "\r\nConnection: close\r\n\r\n" + body);
                             asio::async_write(*shared, asio::buffer(*response),
                                               [shared, response](boost::system::error_code, size_t) {
                                                 boost::system::error_code ignored;
                                                 shared->shutdown(tcp::socket::shutdown_both, ignored);
                                               });
                           });
  }
};

MetricsServer::MetricsServer(const std::string& listen, Registry& registry) : impl_(std::make_unique<Impl>()) {
  impl_->registry = &registry;
  if (listen.empty()) return;
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("metrics.listen must be host:port, got '" + listen + "'");
  tcp::endpoint endpoint(asio::ip::make_address(listen.substr(0, colon)),
                         static_cast<unsigned short>(std::stoi(listen.substr(colon + 1))));
  boost::system::error_code error;
  impl_->acceptor.open(endpoint.protocol(), error);
  if (!error) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), error);
  if (!error) impl_->acceptor.bind(endpoint, error);
  if (!error) impl_->acceptor.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    impl_->error = "cannot listen on " + listen + ": " + error.message();
    return;
  }
  impl_->port = impl_->acceptor.local_endpoint().port();
  impl_->Accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

MetricsServer::~MetricsServer() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int MetricsServer::port() const { return impl_->port; }
const std::string& MetricsServer::error() const { return impl_->error; }

}  // namespace skiff::metrics
