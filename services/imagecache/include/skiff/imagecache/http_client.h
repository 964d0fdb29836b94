#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace skiff::imagecache {

struct Url {
  std::string scheme;  // http | https
  std::string host;
  std::string port;
  std::string target;  // path and query

  static std::optional<Url> Parse(const std::string& text);
  std::string HostPort() const;
  std::string String() const;
  // Resolves a Location header (absolute, or absolute-path) against this URL.
  std::optional<Url> Resolve(const std::string& location) const;
};

struct HttpResult {
  int status = 0;                              // 0: no response (connection failed)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // collected unless streamed to a sink
  std::string error;                           // transport error text when status is 0 or the body broke off
  bool body_complete = true;

  std::string Header(const std::string& lower) const {
    auto it = headers.find(lower);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Receives body bytes of a 200/206 answer with that status; returns false to abort.
using BodySink = std::function<bool(int status, const char* data, size_t size)>;

// One HTTP GET without following redirects (the registry client decides that). The port
// the registry client sees; BeastHttpClient is the adapter, tests use a scripted fake.
class HttpClient {
 public:
  virtual ~HttpClient() = default;
  virtual HttpResult Get(const Url& url, const std::vector<std::pair<std::string, std::string>>& headers,
                         const BodySink* sink) = 0;
};

// HTTP/1.1 over TCP or TLS (Boost.Beast + OpenSSL) with peer and host-name verification
// against the system CAs plus `extra_ca_file`, and socket timeouts.
class BeastHttpClient : public HttpClient {
 public:
  explicit BeastHttpClient(std::string extra_ca_file = "", int timeout_seconds = 30);
  HttpResult Get(const Url& url, const std::vector<std::pair<std::string, std::string>>& headers,
                 const BodySink* sink) override;

 private:
  std::string extra_ca_file_;
  int timeout_seconds_;
};

}  // namespace skiff::imagecache
