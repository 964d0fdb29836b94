#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "skiff/gateway/http_types.h"

namespace skiff::gateway {

struct HttpsServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 8443;  // 0: any free port
  std::string certificate_chain_file;
  std::string private_key_file;
  int threads = 4;
  size_t body_limit = 1024 * 1024;  // larger bodies get 413
  int idle_timeout_seconds = 60;
};

using RequestHandler = std::function<HttpResponse(const HttpRequest&)>;

// The server's side of an open WebSocket: thread-safe, and a no-op once the socket is gone.
class WebSocketConnection {
 public:
  virtual ~WebSocketConnection() = default;
  virtual void Send(std::string data, bool binary) = 0;
  virtual void Close(uint16_t code, std::string reason) = 0;
};

// The application's side of one WebSocket. Calls come in order, never at the same time.
class WebSocketSession {
 public:
  virtual ~WebSocketSession() = default;
  virtual void OnOpen(std::shared_ptr<WebSocketConnection> connection) = 0;
  virtual void OnMessage(const std::string& data, bool binary) = 0;
  virtual void OnClose() = 0;
};

// Decides on an upgrade request: a session to accept it with, or the HTTP answer refusing it.
struct WebSocketDecision {
  std::shared_ptr<WebSocketSession> session;
  HttpResponse refusal;
};
using WebSocketAcceptor = std::function<WebSocketDecision(const HttpRequest&)>;

// HTTPS/1.1 server on Boost.Beast with TLS 1.2+ (OpenSSL), keep-alive, per-connection
// timeouts and a body limit. Requests the parser rejects are answered with ARM-shaped errors.
class HttpsServer {
 public:
  // WebSocket upgrades go to `acceptor` when there is one; other requests to `handler`.
  HttpsServer(HttpsServerOptions options, RequestHandler handler, WebSocketAcceptor acceptor = nullptr);
  ~HttpsServer();

  // Binds and starts the worker threads; throws on bind or TLS set-up failure.
  void Start();
  uint16_t BoundPort() const;
  // Blocks until Stop() (or a signal handler calling Stop()).
  void Wait();
  // Stops accepting, gives open connections `grace_seconds` to finish, then stops the threads.
  void Stop(int grace_seconds = 5);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace skiff::gateway
