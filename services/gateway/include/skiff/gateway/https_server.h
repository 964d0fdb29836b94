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

// HTTPS/1.1 server on Boost.Beast with TLS 1.2+ (OpenSSL), keep-alive, per-connection
// timeouts and a body limit. Requests the parser rejects are answered with ARM-shaped errors.
class HttpsServer {
 public:
  HttpsServer(HttpsServerOptions options, RequestHandler handler);
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
