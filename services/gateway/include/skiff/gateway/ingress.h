#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "skiff/gateway/network_link.h"

namespace skiff::gateway {

// Where a request for a group's DNS name goes: the group's address and one of its published
// TCP ports (the port in the Host header when it is published, else 80, else the first).
struct IngressTarget {
  std::string address;
  uint16_t port = 0;
};

// Host header -> target, from the network service's answers, cached briefly.
class IngressRouter {
 public:
  IngressRouter(NetworkLink& network, std::chrono::milliseconds cache_for = std::chrono::seconds(2))
      : network_(network), cache_for_(cache_for) {}
  std::optional<IngressTarget> Route(const std::string& host_header);

 private:
  NetworkLink& network_;
  std::chrono::milliseconds cache_for_;
  std::mutex mutex_;
  struct Cached {
    std::optional<network::v1::ResolveReply> reply;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, Cached> cache_;
};

struct IngressOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 8080;  // 0: any free port
  size_t body_limit = 16 * 1024 * 1024;
  int max_connections = 256;
  std::chrono::seconds upstream_timeout{30};
};

// The HTTP ingress: proxies each request to the group its Host header names (plain HTTP/1.1,
// one request per connection). 404 for a name no group holds, 502 when the group does not answer.
class IngressServer {
 public:
  IngressServer(IngressOptions options, IngressRouter& router);
  ~IngressServer();
  void Start();  // binds; throws on failure
  uint16_t BoundPort() const;
  void Stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace skiff::gateway
